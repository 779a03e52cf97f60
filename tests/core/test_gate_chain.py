"""The gate's MFA chain dialogue (`core.gate`, FACTOR state): after the
login line's code, `Next factor: <label>` and one more line per factor; any
failure back to the banner with the one failure text; and, driven with the
real `core.chain.MFAOrchestrator`, the port never opens without every
required factor's code."""

from __future__ import annotations

import pyotp
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shimmfa.core.chain import MFAOrchestrator, Policy
from shimmfa.core.chain_policy import FactorDefinition
from shimmfa.core.chain_state import MemoryChainStore
from shimmfa.core.gate import (
    BREAKGLASS_ID,
    EMERGENCY_NOTICE,
    Action,
    Authenticate,
    AuthFailed,
    ForwardToDevice,
    GateConfig,
    GateMachine,
    GateState,
    SendToTechnician,
    SessionOpened,
)
from shimmfa.core.totp import AuthOutcome, AuthResult, MemoryAuthStore, TechnicianRecord, TotpGate

ALICE = "alice@example.org"
PRIMARY = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - test secret
BACKUP = "MJXWELLTMVRXEZLUFVXWMLJSGAWWE6LU"  # noqa: S105 - test secret
T0 = 1_800_000_010.0
SID = "20270115T080010.000Z-0123456789ab"
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
QUIET = GateConfig(echo=False, backoff_initial=0)


def sent(actions: list[Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, SendToTechnician))


def ok(step: str = "test") -> AuthOutcome:
    return AuthOutcome(AuthResult.OK, ALICE, None, step)


def asked_for_backup(gate: GateMachine) -> list[Action]:
    gate.receive(f"{ALICE} 123456\r".encode(), T0)
    return gate.auth_done(ok(), None, T0, next_factor="Backup token")


def test_the_next_factor_is_asked_for_by_its_label() -> None:
    gate = GateMachine(QUIET)
    actions = asked_for_backup(gate)
    assert sent(actions) == b"\r\nNext factor: Backup token\r\n> "
    assert gate.state is GateState.FACTOR
    assert gate.receive(b" 654321 \r", T0) == [Authenticate(ALICE, "654321", 1)]
    assert gate.state is GateState.AUTHENTICATING


def test_whatever_is_typed_at_the_factor_prompt_is_that_factors_attempt() -> None:
    for line in (b"alice@example.org 654321\r", b"\r", b"not a code\r"):
        gate = GateMachine(QUIET)
        asked_for_backup(gate)
        (request,) = [a for a in gate.receive(line, T0) if isinstance(a, Authenticate)]
        assert request.step == 1 and request.technician_id == ALICE


def test_a_failed_factor_gets_the_one_failure_and_restarts_at_the_banner() -> None:
    gate = GateMachine(QUIET)
    asked_for_backup(gate)
    gate.receive(b"000000\r", T0)
    failed = AuthOutcome(AuthResult.BAD_CODE, ALICE, None, "factor 'Backup token': wrong code")
    actions = gate.auth_done(failed, None, T0)
    assert sent(actions) == FAILURE
    assert [a.detail for a in actions if isinstance(a, AuthFailed)] == [failed.detail]
    assert gate.state is GateState.CHALLENGE
    assert gate.receive(b"654321\r", T0)[-1:] != [Authenticate(ALICE, "654321", 1)]


def test_the_last_factor_opens_the_session_and_typed_ahead_bytes_follow() -> None:
    gate = GateMachine(QUIET)
    asked_for_backup(gate)
    gate.receive(b"654321\rstatus\r", T0)
    actions = gate.auth_done(ok("factor ok"), SID, T0)
    assert SessionOpened(ALICE, SID) in actions
    assert actions[-1] == ForwardToDevice(b"status\r")


def test_a_new_technician_at_the_port_starts_from_the_banner() -> None:
    gate = GateMachine(QUIET)
    asked_for_backup(gate)
    assert b"Shim MFA gate." in sent(gate.banner())
    assert gate.state is GateState.CHALLENGE


def test_a_lock_drops_the_chain() -> None:
    gate = GateMachine(QUIET)
    asked_for_backup(gate)
    gate.lock("tamper", "Locked: tamper:case_opened.")
    gate.unlock("tamper")
    assert gate.state is GateState.CHALLENGE
    assert gate.receive(b"654321\r", T0) != [Authenticate(ALICE, "654321", 1)]


def test_a_label_with_control_characters_cannot_write_to_the_terminal() -> None:
    gate = GateMachine(QUIET)
    gate.receive(f"{ALICE} 123456\r".encode(), T0)
    actions = gate.auth_done(ok(), None, T0, next_factor="evil\x1b[2J")
    assert b"\x1b" not in sent(actions)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Ordered:
    """A deterministic stand-in for secrets.SystemRandom (fixed mode ignores it)."""

    def sample(self, population: list[str], k: int) -> list[str]:
        return list(population)[:k]


class ChainedGate(RuleBasedStateMachine):
    """Random typing, right and wrong codes, a real TOTP gate and a real
    chain; invariant: the session opens only after both right codes of one
    attempt, and nothing reaches the device before."""

    @initialize()
    def start(self) -> None:
        self.clock = Clock()
        self.totp = TotpGate(
            {ALICE: TechnicianRecord(ALICE, PRIMARY)},
            time_source=self.clock,
            store=MemoryAuthStore(),
        )
        policy = Policy("fixed", 1, [FactorDefinition("backup", "Backup token")])
        self.chain = MFAOrchestrator(
            policy,
            {"backup": BACKUP},
            clock=self.clock,
            rng=Ordered(),
            store=MemoryChainStore(),
            subject=ALICE,
        )
        self.gate = GateMachine(QUIET)
        self.asked: Authenticate | None = None
        self.right: list[int] = []  # steps answered with the right code in this attempt

    def _code(self, secret: str, right: bool) -> str:
        code = pyotp.TOTP(secret).at(int(self.clock.now))
        return code if right else f"{(int(code) + 1) % 1_000_000:06d}"

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Authenticate):
                self.asked = action
            assert not isinstance(action, ForwardToDevice) or self.gate.state is GateState.OPEN
            if isinstance(action, SessionOpened):
                assert self.right == [0, 1]

    @precondition(lambda self: self.gate.state is GateState.CHALLENGE)
    @rule(right=st.booleans())
    def login_line(self, right: bool) -> None:
        self._run(self.gate.receive(f"{ALICE} {self._code(PRIMARY, right)}\r".encode(), T0))

    @precondition(lambda self: self.gate.state is GateState.FACTOR)
    @rule(right=st.booleans(), junk=st.sampled_from(["", " x", "\r1"]))
    def factor_line(self, right: bool, junk: str) -> None:
        line = self._code(BACKUP, right) + (junk if not right else "")
        self._run(self.gate.receive(line.encode() + b"\r", T0))

    @rule(seconds=st.sampled_from([0.0, 30.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @precondition(lambda self: self.asked is not None)
    @rule()
    def decide(self) -> None:
        request, self.asked = self.asked, None
        assert request is not None
        if request.step == 0:
            outcome = self.totp.authenticate(request.technician_id, request.code)
            self.right = [0] if outcome.authenticated else []
            if outcome.authenticated:
                self.chain.initialize_attempt()
            label = self.chain.current_factor.label if outcome.authenticated else None
            self._run(self.gate.auth_done(outcome, None, T0, next_factor=label))
            return
        result = self.chain.verify_step(request.code)
        if result.success:
            self.right.append(1)
            outcome = ok()
        else:
            self.right = []
            outcome = AuthOutcome(AuthResult.BAD_CODE, ALICE, None, result.detail)
        self._run(self.gate.auth_done(outcome, SID if result.is_complete else None, T0))

    @invariant()
    def open_only_after_every_factor(self) -> None:
        if self.gate.state is GateState.OPEN:
            assert self.right == [0, 1]


ChainedGate.TestCase.settings = settings(max_examples=80, stateful_step_count=25)
test_any_typing_opens_the_port_only_after_every_factor_of_one_attempt = ChainedGate.TestCase


def test_a_breakglass_session_tells_the_technician_it_is_under_emergency_audit() -> None:
    gate = GateMachine(QUIET)
    assert gate.receive(b"breakglass 123456\r", T0) == [Authenticate(BREAKGLASS_ID, "123456")]
    opened = gate.auth_done(AuthOutcome(AuthResult.OK, BREAKGLASS_ID, None, "ok"), SID, T0)
    assert (
        sent(opened)
        == (
            f"\r\nAuthenticated as breakglass; session {SID}\r\n{EMERGENCY_NOTICE}\r\n"
            "Pass-through enabled. Disconnect to end session.\r\n"
        ).encode()
    )
    other = GateMachine(QUIET)
    other.receive(f"{ALICE} 123456\r".encode(), T0)
    plain = sent(other.auth_done(ok(), SID, T0))
    assert (
        plain
        == (
            f"\r\nAuthenticated as {ALICE}; session {SID}\r\n"
            "Pass-through enabled. Disconnect to end session.\r\n"
        ).encode()
    )  # the seed's words, byte for byte
