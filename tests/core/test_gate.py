"""The gate dialogue (`shimmfa.core.gate.GateMachine`), driven as the relay
drives it: bytes in, actions out. The seed's strings are written out here
literally (from the design), not imported, so a change to them fails a test.
Authentication answers come from a real `TotpGate`; valid codes from pyotp.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyotp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from shimmfa.core.gate import (
    BANNER,
    Action,
    Authenticate,
    AuthFailed,
    Discarded,
    FormatRejected,
    ForwardToDevice,
    GateConfig,
    GateMachine,
    GateState,
    SendToTechnician,
    SessionClosed,
    SessionOpened,
)
from shimmfa.core.session import new_session_id
from shimmfa.core.totp import (
    AuthOutcome,
    AuthResult,
    MemoryAuthStore,
    TechnicianRecord,
    TotpGate,
)

BANNER_TEXT = b"\r\nShim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
FORMAT_TEXT = b"\r\nFormat: <technician_id> <totp_code>\r\n> "
FAILURE_TEXT = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "

ALICE = "alice@example.org"
BOB = "bob@example.org"
ALICE_SECRET = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - test secret
BOB_SECRET = "MJXWELLTMVRXEZLUFVXWMLJSGAWWE6LU"  # noqa: S105 - test secret
USERS = {ALICE: TechnicianRecord(ALICE, ALICE_SECRET), BOB: TechnicianRecord(BOB, BOB_SECRET)}
T0 = 1_800_000_010.0
SID = "20270115T080010.000Z-0123456789ab"
QUIET = GateConfig(echo=False)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def sent(actions: Iterable[Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, SendToTechnician))


def forwarded(actions: Iterable[Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, ForwardToDevice))


def of_type(actions: Iterable[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def ok(technician_id: str = ALICE) -> AuthOutcome:
    return AuthOutcome(AuthResult.OK, technician_id, int(T0) // 30, "test")


def valid_code(secret: str = ALICE_SECRET, when: float = T0) -> str:
    return pyotp.TOTP(secret).at(int(when))


def authenticating(
    gate: GateMachine, line: bytes = b"alice@example.org 123456\r", now: float = T0
) -> list[Action]:
    actions = gate.receive(line, now)
    assert gate.state is GateState.AUTHENTICATING
    return actions


def opened(config: GateConfig = QUIET) -> GateMachine:
    gate = GateMachine(config)
    authenticating(gate)
    gate.auth_done(ok(), SID, T0)
    assert gate.state is GateState.OPEN
    return gate


# -- banner, format, line ends ---------------------------------------------------------


def test_banner_is_the_seed_text() -> None:
    assert GateMachine().banner() == [SendToTechnician(BANNER_TEXT)]
    assert BANNER == BANNER_TEXT


@pytest.mark.parametrize("line", [b"", b"alice@example.org", b"alice@example.org 123456 extra"])
def test_format_reply_unless_exactly_two_tokens(line: bytes) -> None:
    gate = GateMachine(QUIET)
    actions = gate.receive(line + b"\r", T0)
    assert sent(actions) == FORMAT_TEXT
    assert len(of_type(actions, FormatRejected)) == 1
    assert not of_type(actions, Authenticate)
    assert gate.state is GateState.CHALLENGE


@pytest.mark.parametrize(
    "chunks",
    [
        [b"x\r"],
        [b"x\n"],
        [b"x\r\n"],
        [b"x\r", b"\n"],
        [b"x", b"\r", b"\n"],
        [b"x\r", b"", b"\n"],
    ],
    ids=repr,
)
def test_cr_lf_and_crlf_each_end_a_line_once(chunks: list[bytes]) -> None:
    gate = GateMachine(QUIET)
    actions = [a for chunk in chunks for a in gate.receive(chunk, T0)]
    assert sent(actions) == FORMAT_TEXT
    follow = gate.receive(b"alice@example.org 123456\n", T0)
    assert of_type(follow, Authenticate) == [Authenticate(ALICE, "123456")]


@pytest.mark.parametrize(
    ("data", "lines"), [(b"\r\r", 2), (b"\n\n", 2), (b"\n\r", 2), (b"\r\n\r\n", 2)]
)
def test_line_ends_that_are_not_crlf_pairs_are_separate_lines(data: bytes, lines: int) -> None:
    actions = GateMachine(QUIET).receive(data, T0)
    assert len(of_type(actions, FormatRejected)) == lines


def test_auth_line_ending_in_cr_then_lf_in_next_read_forwards_no_lf() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate, b"alice@example.org 123456\r")
    gate.auth_done(ok(), SID, T0)
    actions = gate.receive(b"\nstatus\r", T0)
    assert forwarded(actions) == b"status\r"


def test_lf_completing_crlf_while_authenticating_is_not_forwarded() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate, b"alice@example.org 123456\r")
    assert gate.receive(b"\nls", T0) == []
    actions = gate.auth_done(ok(), SID, T0)
    assert forwarded(actions) == b"ls"


def test_a_lone_lf_typed_after_a_cr_session_start_is_forwarded_later() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate, b"alice@example.org 123456\r")
    gate.auth_done(ok(), SID, T0)
    assert forwarded(gate.receive(b"a", T0)) == b"a"
    assert forwarded(gate.receive(b"\n", T0)) == b"\n"


# -- line editing and echo ---------------------------------------------------------------


@pytest.mark.parametrize("erase", [b"\x08", b"\x7f"])
def test_backspace_and_delete_edit_the_line(erase: bytes) -> None:
    gate = GateMachine(QUIET)
    actions = gate.receive(b"alicX" + erase + b"e@example.org 1234567" + erase + b"\r", T0)
    assert of_type(actions, Authenticate) == [Authenticate(ALICE, "123456")]


def test_erase_echoes_backspace_space_backspace() -> None:
    gate = GateMachine(GateConfig(echo=True))
    assert sent(gate.receive(b"ab", T0)) == b"ab"
    assert sent(gate.receive(b"\x7f", T0)) == b"\b \b"
    assert sent(gate.receive(b"\x08", T0)) == b"\b \b"
    assert sent(gate.receive(b"\x08", T0)) == b""  # nothing left to erase


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_erase_removes_a_whole_multibyte_character(char: str) -> None:
    gate = GateMachine(QUIET)
    encoded = char.encode()
    for byte in encoded:  # arrives one byte per read
        gate.receive(bytes([byte]), T0)
    gate.receive(b"\x7f", T0)
    actions = gate.receive(b"bob@example.org 654321\r", T0)
    assert of_type(actions, Authenticate) == [Authenticate(BOB, "654321")]


def test_echo_on_repeats_what_is_typed() -> None:
    gate = GateMachine(GateConfig(echo=True))
    assert sent(gate.receive(b"alice@", T0)) == b"alice@"
    assert sent(gate.receive(b"example.org", T0)) == b"example.org"


def test_echo_off_repeats_nothing() -> None:
    gate = GateMachine(GateConfig(echo=False))
    assert gate.receive(b"alice@example.org 1234", T0) == []
    assert gate.receive(b"\x7f", T0) == []


@pytest.mark.parametrize("clear", [b"\x03", b"\x15"], ids=["ctrl-c", "ctrl-u"])
def test_ctrl_c_and_ctrl_u_clear_the_line(clear: bytes) -> None:
    gate = GateMachine(GateConfig(echo=True))
    gate.receive(b"alice@example.org 12", T0)
    actions = gate.receive(clear, T0)
    assert sent(actions).endswith(b"\r\n> ")
    actions = gate.receive(b"bob@example.org 654321\r", T0)
    assert of_type(actions, Authenticate) == [Authenticate(BOB, "654321")]


def test_line_of_exactly_max_line_bytes_is_accepted() -> None:
    gate = GateMachine(GateConfig(echo=False, max_line=32))
    line = b"t" * 25 + b" 123456"
    assert len(line) == 32
    actions = gate.receive(line + b"\r", T0)
    assert of_type(actions, Authenticate) == [Authenticate("t" * 25, "123456")]


def test_line_one_byte_over_max_line_is_refused() -> None:
    gate = GateMachine(GateConfig(echo=False, max_line=32))
    actions = gate.receive(b"t" * 26 + b" 123456\r", T0)
    assert not of_type(actions, Authenticate)
    assert sent(actions) == FORMAT_TEXT


@pytest.mark.parametrize("echo", [True, False])
def test_overlong_line_gets_one_format_reply_and_the_rest_is_dropped(echo: bool) -> None:
    gate = GateMachine(GateConfig(echo=echo, max_line=32))
    actions: list[Action] = []
    for chunk in (b"t" * 26, b" 123456", b" more and more text", b" 654321", b"\r\n"):
        actions += gate.receive(chunk, T0)
    assert len(of_type(actions, FormatRejected)) == 1
    assert sent(actions).count(FORMAT_TEXT) == 1
    assert not of_type(actions, Authenticate)
    after_reply = sent(actions).split(FORMAT_TEXT, 1)[1]
    assert after_reply == b""  # the dropped rest is not echoed either
    follow = gate.receive(b"bob@example.org 654321\r", T0)
    assert of_type(follow, Authenticate) == [Authenticate(BOB, "654321")]


@pytest.mark.parametrize(
    "line",
    [
        b"al\xffice 123456",  # not UTF-8
        b"alice\xc3 123456",  # truncated UTF-8
        b"alice\x01 123456",  # C0 control
        b"alice 1234\x1b[A56",  # escape sequence
        b"alice\xc2\x85x 123456",  # C1 control (NEL)
        b"alice\xc2\x9b 123456",  # C1 control (CSI)
    ],
    ids=repr,
)
def test_non_utf8_or_control_characters_get_format_reply(line: bytes) -> None:
    gate = GateMachine(QUIET)
    actions = gate.receive(line + b"\r", T0)
    assert sent(actions) == FORMAT_TEXT
    assert not of_type(actions, Authenticate)


def test_authenticate_action_carries_the_tokens() -> None:
    gate = GateMachine(QUIET)
    actions = gate.receive(b"   alice@example.org    123456  \r", T0)
    assert actions == [Authenticate(ALICE, "123456")]
    assert gate.state is GateState.AUTHENTICATING


def test_utf8_technician_id_is_decoded() -> None:
    actions = GateMachine(QUIET).receive("jürgen@example.org 123456\r".encode(), T0)
    assert actions == [Authenticate("jürgen@example.org", "123456")]


# -- authentication results -----------------------------------------------------------------


def test_success_text_session_opened_then_typed_ahead_bytes() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate, b"alice@example.org 123456\r\nshow log\r")
    assert gate.receive(b"exit\r", T0) == []
    actions = gate.auth_done(ok(), SID, T0)
    success = (
        f"\r\nAuthenticated as {ALICE}; session {SID}\r\n"
        "Pass-through enabled. Disconnect to end session.\r\n"
    ).encode()
    assert actions == [
        SendToTechnician(success),
        SessionOpened(ALICE, SID),
        ForwardToDevice(b"show log\rexit\r"),
    ]
    assert gate.state is GateState.OPEN
    assert gate.session_id == SID
    assert gate.technician_id == ALICE


def test_open_session_relays_both_ways() -> None:
    gate = opened()
    assert gate.receive(b"\x03\x7f\x00any bytes\r\n", T0) == [
        ForwardToDevice(b"\x03\x7f\x00any bytes\r\n")
    ]
    assert gate.device_output(b"device says hi\r\n") == [SendToTechnician(b"device says hi\r\n")]


def test_ok_outcome_without_session_id_does_not_open() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate)
    actions = gate.auth_done(ok(), None, T0)
    assert gate.state is not GateState.OPEN
    assert not of_type(actions, SessionOpened)


def _real_outcome(result: AuthResult) -> AuthOutcome:
    """An outcome with `result`, produced by a real TotpGate."""
    clock = [T0]
    totp = TotpGate(USERS, time_source=lambda: clock[0], store=MemoryAuthStore(), max_failures=2)
    good = valid_code()
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    if result is AuthResult.BAD_USER:
        return totp.authenticate("mallory@example.org", good)
    if result is AuthResult.FORMAT:
        return totp.authenticate(ALICE, "12345x")
    if result is AuthResult.REPLAY:
        totp.authenticate(ALICE, good)
        return totp.authenticate(ALICE, good)
    if result is AuthResult.LOCKED_OUT:
        totp.authenticate(ALICE, wrong)
        totp.authenticate(ALICE, wrong)
        return totp.authenticate(ALICE, good)
    return totp.authenticate(ALICE, wrong)


FAILURES = [
    AuthResult.BAD_USER,
    AuthResult.BAD_CODE,
    AuthResult.REPLAY,
    AuthResult.LOCKED_OUT,
    AuthResult.FORMAT,
]


@pytest.mark.parametrize("result", FAILURES)
def test_every_failure_gets_the_identical_reply(result: AuthResult) -> None:
    outcome = _real_outcome(result)
    assert outcome.result is result
    gate = GateMachine(QUIET)
    authenticating(gate)
    actions = gate.auth_done(outcome, None, T0)
    assert sent(actions) == FAILURE_TEXT
    assert outcome.detail.encode() not in sent(actions)
    failed = of_type(actions, AuthFailed)
    assert len(failed) == 1
    assert failed[0].result is result  # the precise reason, for the log only
    assert gate.state is GateState.CHALLENGE


@pytest.mark.parametrize("result", FAILURES)
def test_a_failure_never_opens_even_with_a_session_id(result: AuthResult) -> None:
    gate = GateMachine(QUIET)
    authenticating(gate, b"alice@example.org 123456\rls\r")
    actions = gate.auth_done(_real_outcome(result), SID, T0)
    assert not of_type(actions, SessionOpened)
    assert not of_type(actions, ForwardToDevice)
    assert gate.state is GateState.CHALLENGE
    assert gate.session_id is None


def _fail_once(gate: GateMachine, now: float) -> AuthFailed:
    gate.receive(b"alice@example.org 000000\r", now)
    actions = gate.auth_done(_real_outcome(AuthResult.BAD_CODE), None, now)
    failed = of_type(actions, AuthFailed)
    assert len(failed) == 1
    assert isinstance(failed[0], AuthFailed)
    return failed[0]


def test_backoff_doubles_and_is_capped() -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=1, backoff_max=60))
    now = T0
    delays = []
    for _ in range(9):
        delay = _fail_once(gate, now).backoff_seconds
        delays.append(delay)
        now += delay
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_input_during_backoff_is_discarded_with_one_notice() -> None:
    gate = GateMachine(GateConfig(echo=True, backoff_initial=4, backoff_max=60))
    _fail_once(gate, T0)
    first = gate.receive(b"alice@example.org 123456\r", T0 + 1)
    second = gate.receive(b"bob@example.org 654321\r", T0 + 2)
    third = gate.receive(b"x", T0 + 3.5)
    everything = first + second + third
    assert not of_type(everything, Authenticate)
    discarded = [a.nbytes for a in everything if isinstance(a, Discarded)]
    assert sum(discarded) == 25 + 23 + 1
    notices = [a for a in everything if isinstance(a, SendToTechnician)]
    assert len(notices) == 1
    assert b"\r\n" in notices[0].data
    # The backoff is over: the port listens again.
    assert of_type(gate.receive(b"bob@example.org 654321\r", T0 + 4), Authenticate) == [
        Authenticate(BOB, "654321")
    ]


def test_each_backoff_gets_its_own_notice() -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=1, backoff_max=60))
    _fail_once(gate, T0)
    assert len(of_type(gate.receive(b"a", T0 + 0.5), SendToTechnician)) == 1
    _fail_once(gate, T0 + 1)
    assert len(of_type(gate.receive(b"a", T0 + 1.5), SendToTechnician)) == 1
    assert of_type(gate.receive(b"a", T0 + 2), SendToTechnician) == []


def test_typed_ahead_line_after_a_failure_is_discarded_during_backoff() -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=1))
    gate.receive(b"alice@example.org 000000\ralice@example.org 111111\r", T0)
    actions = gate.auth_done(_real_outcome(AuthResult.BAD_CODE), None, T0)
    assert not of_type(actions, Authenticate)
    assert of_type(actions, Discarded)


def test_backoff_initial_zero_disables_backoff() -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=0))
    for _ in range(5):
        assert _fail_once(gate, T0).backoff_seconds == 0
    gate.receive(b"alice@example.org 000000\ralice@example.org 111111\r", T0)
    actions = gate.auth_done(_real_outcome(AuthResult.BAD_CODE), None, T0)
    assert of_type(actions, Authenticate) == [Authenticate(ALICE, "111111")]


def test_success_resets_the_backoff() -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=1, backoff_max=60))
    now = T0
    for _ in range(3):
        now += _fail_once(gate, now).backoff_seconds
    authenticating(gate, now=now)
    gate.auth_done(ok(), SID, now)
    gate.end_session("technician_hangup")
    assert _fail_once(gate, now).backoff_seconds == 1


def test_a_restored_backoff_holds_input_for_what_is_left_and_keeps_doubling() -> None:
    before = GateMachine(GateConfig(echo=False, backoff_initial=1, backoff_max=60))
    now = T0
    for _ in range(3):
        now += _fail_once(before, now).backoff_seconds
    _fail_once(before, now)  # the 4th failure: 8 s
    assert before.failures == 4
    left = before.backoff_remaining(now + 3)
    assert left == 5

    after = GateMachine(GateConfig(echo=False, backoff_initial=1, backoff_max=60))
    after.restore_backoff(before.failures, left, 1000.0)  # a new monotonic clock

    held = after.receive(b"alice@example.org 123456\r", 1004.9)
    assert not of_type(held, Authenticate)
    assert of_type(held, Discarded)
    assert after.receive(b"alice@example.org 123456\r", 1005.0) == [Authenticate(ALICE, "123456")]
    failed = of_type(after.auth_done(_real_outcome(AuthResult.BAD_CODE), None, 1005.0), AuthFailed)
    assert [a.backoff_seconds for a in failed if isinstance(a, AuthFailed)] == [16]


@pytest.mark.parametrize(
    ("remaining", "held_for"), [(-30.0, 0.0), (0.0, 0.0), (10**9, 60.0), (float("inf"), 60.0)]
)
def test_a_restored_backoff_is_clamped_to_one_full_backoff(
    remaining: float, held_for: float
) -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=1, backoff_max=60))
    gate.restore_backoff(7, remaining, T0)
    assert gate.backoff_remaining(T0) == held_for
    assert gate.failures == 7


def test_a_restored_backoff_is_ignored_when_backoff_is_disabled() -> None:
    gate = GateMachine(GateConfig(echo=False, backoff_initial=0))
    gate.restore_backoff(5, 30.0, T0)
    assert gate.receive(b"alice@example.org 123456\r", T0) == [Authenticate(ALICE, "123456")]


# -- device output, session end, locks, emergency stop -----------------------------------


def test_device_output_outside_open_is_counted_and_never_delivered() -> None:
    gate = GateMachine(QUIET)
    assert gate.device_output(b"boot log\r\n") == []
    authenticating(gate)
    assert gate.device_output(b"password: ") == []
    assert gate.discarded_device_bytes == len(b"boot log\r\n") + len(b"password: ")
    actions = gate.auth_done(ok(), SID, T0)
    assert b"boot log" not in sent(actions)
    assert b"password" not in sent(actions)
    assert gate.device_output(b"new") == [SendToTechnician(b"new")]
    assert gate.discarded_device_bytes == 20


def test_end_session_closes_and_returns_to_challenge() -> None:
    gate = opened()
    assert gate.end_session("idle_timeout") == [SessionClosed(SID, "idle_timeout")]
    assert gate.state is GateState.CHALLENGE
    assert gate.session_id is None
    actions = gate.receive(b"ls\r", T0)
    assert not of_type(actions, ForwardToDevice)
    assert sent(actions) == FORMAT_TEXT
    assert gate.end_session("again") == []


def test_lock_shows_notice_and_refuses_logins() -> None:
    gate = GateMachine(QUIET)
    assert gate.lock("storage", "Storage exhausted") == []
    assert gate.state is GateState.LOCKED
    assert gate.banner() == [SendToTechnician(BANNER_TEXT + b"\r\nStorage exhausted\r\n")]
    actions = gate.receive(b"alice@example.org 123456\r", T0)
    assert not of_type(actions, Authenticate)
    assert of_type(actions, Discarded)


def test_locks_are_named_and_all_must_be_released() -> None:
    gate = GateMachine(QUIET)
    gate.lock("storage", "Storage exhausted")
    gate.lock("tamper", "Tamper latch set")
    assert b"Storage exhausted" in sent(gate.banner())
    assert b"Tamper latch set" in sent(gate.banner())
    assert gate.unlock("storage") == []
    assert gate.state is GateState.LOCKED
    assert b"Storage exhausted" not in sent(gate.banner())
    assert gate.unlock("tamper") == [SendToTechnician(BANNER_TEXT)]
    assert gate.state is GateState.CHALLENGE
    assert gate.unlock("never-locked") == []


def test_lock_closes_an_open_session() -> None:
    gate = opened()
    assert gate.lock("device", "Device not connected") == [SessionClosed(SID, "locked:device")]
    assert gate.state is GateState.LOCKED
    assert not of_type(gate.receive(b"ls\r", T0), ForwardToDevice)


def test_lock_during_authentication_ignores_the_late_answer() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate, b"alice@example.org 123456\rls\r")
    gate.lock("tamper", "Tamper latch set")
    assert gate.auth_done(ok(), SID, T0) == []
    assert gate.state is GateState.LOCKED
    gate.unlock("tamper")
    assert not of_type(gate.receive(b"x\r", T0), ForwardToDevice)


def test_emergency_stop_text_and_it_is_final() -> None:
    gate = opened()
    actions = gate.emergency_stop("tamper:case_opened")
    assert actions == [
        SessionClosed(SID, "tamper:case_opened"),
        SendToTechnician(b"\r\nEMERGENCY STOP: tamper:case_opened\r\n"),
    ]
    assert gate.state is GateState.EMERGENCY_STOP
    assert not of_type(gate.receive(b"alice@example.org 123456\r", T0), ForwardToDevice)
    assert gate.device_output(b"x") == []
    assert gate.unlock("tamper") == []
    assert gate.banner() == []
    assert gate.state is GateState.EMERGENCY_STOP


def test_emergency_stop_while_authenticating_never_opens() -> None:
    gate = GateMachine(QUIET)
    authenticating(gate)
    gate.emergency_stop("tamper:magnetic_anomaly")
    assert gate.auth_done(ok(), SID, T0) == []
    assert gate.state is GateState.EMERGENCY_STOP


def test_stale_auth_answer_is_ignored() -> None:
    gate = GateMachine(QUIET)
    assert gate.auth_done(ok(), SID, T0) == []
    assert gate.state is GateState.CHALLENGE


# -- properties -------------------------------------------------------------------------------


@dataclass
class Driver:
    """Runs a gate as the relay does, answering `Authenticate` with a real
    TotpGate `delay` reads after it was asked."""

    gate: GateMachine
    totp: TotpGate
    clock: Clock
    delay: int = 0
    offer_session: bool = False  # pass a session ID even with a failed outcome
    log: list[Action] = field(default_factory=list)
    outcomes: list[AuthOutcome] = field(default_factory=list)
    _asked: Authenticate | None = None
    _waited: int = 0

    def feed(self, data: bytes) -> None:
        self._absorb(self.gate.receive(data, self.clock.now))
        self._waited += 1
        if self._asked is not None and self._waited > self.delay:
            self.answer()

    def answer(self) -> None:
        while self._asked is not None:
            request, self._asked = self._asked, None
            outcome = self.totp.authenticate(request.technician_id, request.code)
            self.outcomes.append(outcome)
            session = SID if outcome.authenticated or self.offer_session else None
            self._absorb(self.gate.auth_done(outcome, session, self.clock.now))

    def _absorb(self, actions: Sequence[Action]) -> None:
        for action in actions:
            self.log.append(action)
            if isinstance(action, Authenticate):
                assert self._asked is None
                self._asked = action
                self._waited = 0


def auth_line() -> st.SearchStrategy[bytes]:
    ids = st.sampled_from([ALICE, BOB, "mallory", "alice@example.org\x7f"])
    codes = st.text(alphabet="0123456789", min_size=5, max_size=8)
    ends = st.sampled_from([b"\r", b"\n", b"\r\n", b""])
    return st.builds(lambda i, c, e: f"{i} {c}".encode() + e, ids, codes, ends)


chunks = st.one_of(st.binary(max_size=64), auth_line(), st.sampled_from([b"\r", b"\n", b"\x7f"]))
events = st.lists(
    st.one_of(
        st.tuples(st.just("rx"), chunks),
        st.tuples(st.just("dev"), st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("tick"), st.floats(0, 90)),
    ),
    max_size=40,
)


@given(
    events=events,
    backoff=st.sampled_from([0.0, 1.0]),
    echo=st.booleans(),
    delay=st.integers(0, 2),
)
@settings(max_examples=300)
def test_without_a_valid_code_nothing_reaches_the_device_and_nothing_raises(
    events: list[tuple[str, object]], backoff: float, echo: bool, delay: int
) -> None:
    clock = Clock()
    totp = TotpGate(USERS, time_source=clock, store=MemoryAuthStore())
    gate = GateMachine(GateConfig(echo=echo, max_line=64, backoff_initial=backoff))
    driver = Driver(gate, totp, clock, delay, offer_session=True)
    for kind, value in events:
        if kind == "rx":
            assert isinstance(value, bytes)
            driver.feed(value)
        elif kind == "dev":
            assert isinstance(value, bytes)
            driver._absorb(gate.device_output(value))
        else:
            assert isinstance(value, float)
            clock.now += value
        assume(not any(o.authenticated for o in driver.outcomes))
    driver.answer()
    assume(not any(o.authenticated for o in driver.outcomes))
    assert not of_type(driver.log, ForwardToDevice)
    assert not of_type(driver.log, SessionOpened)
    assert gate.state is not GateState.OPEN


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@given(
    prefix=st.lists(
        st.tuples(
            st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
            st.sampled_from([b"\r", b"\n", b"\r\n"]),
        ),
        max_size=4,
    ),
    end=st.sampled_from([b"\r", b"\n", b"\r\n"]),
    suffix=st.binary(max_size=80),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    delay=st.integers(0, 3),
    echo=st.booleans(),
)
@settings(max_examples=300)
def test_after_a_valid_code_only_bytes_after_the_auth_line_reach_the_device(
    prefix: list[tuple[bytes, bytes]],
    end: bytes,
    suffix: bytes,
    cuts: list[int],
    delay: int,
    echo: bool,
) -> None:
    clock = Clock()
    totp = TotpGate(USERS, time_source=clock, store=MemoryAuthStore(), max_failures=100)
    gate = GateMachine(GateConfig(echo=echo, max_line=64, backoff_initial=0))
    driver = Driver(gate, totp, clock, delay)
    login = f"{ALICE} {valid_code()}".encode() + end
    stream = b"".join(line + eol for line, eol in prefix) + login + suffix
    for chunk in _split(stream, cuts):
        driver.feed(chunk)
    driver.answer()

    expected = suffix[1:] if end == b"\r" and suffix.startswith(b"\n") else suffix
    opened_at = [i for i, a in enumerate(driver.log) if isinstance(a, SessionOpened)]
    assert len(opened_at) == 1
    assert not of_type(driver.log[: opened_at[0]], ForwardToDevice)
    assert forwarded(driver.log) == expected


class GateStateMachine(RuleBasedStateMachine):
    """Random use of every entry point; the invariants are the gate's rules."""

    @initialize(echo=st.booleans(), backoff=st.sampled_from([0.0, 1.0]))
    def start(self, echo: bool, backoff: float) -> None:
        self.clock = Clock()
        self.totp = TotpGate(USERS, time_source=self.clock, store=MemoryAuthStore())
        self.gate = GateMachine(GateConfig(echo=echo, max_line=64, backoff_initial=backoff))
        self.asked: Authenticate | None = None
        self.locks: set[str] = set()
        self.stopped = False
        self.device_discards = 0
        self.open_as: str | None = None

    def _run(self, actions: list[Action], *, may_open: bool = False) -> None:
        for action in actions:
            if isinstance(action, Authenticate):
                self.asked = action
            if isinstance(action, SessionOpened):
                assert may_open
                assert self.asked is None
                self.open_as = action.technician_id
            if isinstance(action, ForwardToDevice):
                assert self.gate.state is GateState.OPEN

    @rule(data=chunks)
    def receive(self, data: bytes) -> None:
        before = self.gate.state
        actions = self.gate.receive(data, self.clock.now)
        if before is not GateState.OPEN:
            assert not of_type(actions, ForwardToDevice)
        self._run(actions)

    @rule()
    def type_a_valid_login(self) -> None:
        code = valid_code(ALICE_SECRET, self.clock.now)
        self._run(self.gate.receive(f"{ALICE} {code}\r".encode(), self.clock.now))

    @rule(seconds=st.floats(0, 60))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @precondition(lambda self: self.asked is not None)
    @rule()
    def answer(self) -> None:
        assert self.asked is not None
        request, self.asked = self.asked, None
        waiting = self.gate.state is GateState.AUTHENTICATING
        outcome = self.totp.authenticate(request.technician_id, request.code)
        session = new_session_id(self.clock.now, b"\x00" * 6) if outcome.authenticated else None
        actions = self.gate.auth_done(outcome, session, self.clock.now)
        if not waiting:
            assert actions == []
            return
        self._run(actions, may_open=outcome.authenticated)
        if outcome.authenticated:
            assert self.gate.state is GateState.OPEN
            assert self.gate.technician_id == request.technician_id
        else:
            assert sent(actions).startswith(FAILURE_TEXT)

    @precondition(lambda self: self.asked is None)
    @rule()
    def unsolicited_ok(self) -> None:
        before = self.gate.state
        assert self.gate.auth_done(ok(), SID, self.clock.now) == []
        assert self.gate.state is before

    @rule(data=st.binary(min_size=1, max_size=16))
    def device_output(self, data: bytes) -> None:
        state = self.gate.state
        actions = self.gate.device_output(data)
        if state is GateState.OPEN:
            assert actions == [SendToTechnician(data)]
        else:
            assert actions == []
            self.device_discards += len(data)

    @rule(reason=st.sampled_from(["idle_timeout", "technician_hangup"]))
    def end_session(self, reason: str) -> None:
        was_open = self.gate.state is GateState.OPEN
        actions = self.gate.end_session(reason)
        assert (actions != []) == was_open
        if was_open:
            self.open_as = None

    @rule(key=st.sampled_from(["tamper", "storage", "device"]))
    def lock(self, key: str) -> None:
        self.gate.lock(key, f"{key} notice")
        self.locks.add(key)
        self.open_as = None

    @rule(key=st.sampled_from(["tamper", "storage", "device"]))
    def unlock(self, key: str) -> None:
        self.gate.unlock(key)
        self.locks.discard(key)

    @rule()
    def emergency_stop(self) -> None:
        self.gate.emergency_stop("tamper:case_opened")
        self.stopped = True
        self.open_as = None

    @invariant()
    def state_matches_the_model(self) -> None:
        gate = self.gate
        assert (gate.state is GateState.OPEN) == (gate.session_id is not None)
        assert (gate.state is GateState.OPEN) == (self.open_as is not None)
        if self.stopped:
            assert gate.state is GateState.EMERGENCY_STOP
        elif self.locks:
            assert gate.state is GateState.LOCKED
        else:
            assert gate.state in (
                GateState.CHALLENGE,
                GateState.AUTHENTICATING,
                GateState.OPEN,
            )
        if gate.state is GateState.AUTHENTICATING:
            assert self.asked is not None
        assert gate.discarded_device_bytes == self.device_discards


GateStateMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30)
test_any_call_sequence_keeps_the_port_open_only_when_authenticated_and_unlocked = (
    GateStateMachine.TestCase
)
