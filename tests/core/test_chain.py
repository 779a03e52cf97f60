"""MFA chains (`shimmfa.core.chain`).

Codes come from `shimmfa.core.totp.totp_code` at controlled clock values (that
function is pinned to RFC 6238/4226 and oathtool in `test_totp.py`) and from
the RFC 6238 vectors directly; the clock is a settable value, never slept on.
First the seed's manual checklist, then each hole of the seed closed, then our
own rules (lockout, expiry, durable state), then properties.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shimmfa.core.chain import (
    RESET_LABEL,
    FactorDefinition,
    MFAChainBreached,
    MFAOrchestrator,
    Policy,
    Result,
)
from shimmfa.core.chain_state import ChainState, MemoryChainStore
from shimmfa.core.totp import decode_secret, totp_code
from shimmfa.errors import ShimMfaError

T = TypeVar("T")
RFC = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "rfc6238.json").read_text())

# 160-bit test secrets, one per factor.
SECRETS = {
    "token_1": "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ",
    "token_2": base64.b32encode(b"second-factor-secret").decode(),
    "token_3": base64.b32encode(b"third-factor-secret!").decode(),
}
# The seed README's factors, in its dict form.
SEED_FACTORS = [
    {"id": "token_1", "label": "Authenticator App", "type": "totp"},
    {"id": "token_2", "label": "Backup Device", "type": "totp"},
    {"id": "token_3", "label": "Hardware Token", "type": "totp"},
]
FIXED = Policy(mode="fixed", required_steps=2, factors=SEED_FACTORS)
RANDOM = Policy(mode="random", required_steps=2, factors=SEED_FACTORS)
LABELS = {f["id"]: f["label"] for f in SEED_FACTORS}
RESET = Result(False, False, RESET_LABEL)
# 1_800_000_000 is the start of a 30 s step; T0 is 10 s into that step.
T0 = 1_800_000_010.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedRandom:
    """A random source that hands out the given orders of factor ids, in turn."""

    def __init__(self, *orders: Sequence[str]) -> None:
        self.orders = [list(order) for order in orders]

    def sample(self, population: Sequence[FactorDefinition], k: int) -> list[FactorDefinition]:
        wanted = self.orders.pop(0)
        by_id = {factor.id: factor for factor in population}
        assert len(wanted) == k
        return [by_id[factor_id] for factor_id in wanted]


class CountingStore:
    """The `ChainStateStore` seam with a count of committed updates."""

    def __init__(self) -> None:
        self.inner = MemoryChainStore()
        self.updates = 0

    def update(self, key: str, change: Callable[[ChainState], tuple[ChainState, T]]) -> T:
        self.updates += 1
        return self.inner.update(key, change)

    def get(self, key: str) -> ChainState:
        return self.inner.get(key)


def code(factor_id: str, when: float, steps: int = 0, secret_of: dict[str, str] = SECRETS) -> str:
    """What the authenticator app of `factor_id` shows at `when` + `steps` time steps."""
    return totp_code(decode_secret(secret_of[factor_id]), int(when) // 30 + steps, 6, "SHA1")


def wrong(factor_id: str, when: float, window: int = 3) -> str:
    """A well-formed code that no time step within `window` accepts."""
    valid = {code(factor_id, when, k) for k in range(-window, window + 1)}
    candidate = int(code(factor_id, when))
    while f"{candidate:06d}" in valid:
        candidate = (candidate + 1) % 1_000_000
    return f"{candidate:06d}"


def make(
    clock: Clock,
    policy: Policy = FIXED,
    *,
    store: Any = None,
    rng: Any = None,
    subject: str = "alice",
    secret_of: dict[str, str] = SECRETS,
    **kwargs: Any,
) -> MFAOrchestrator:
    return MFAOrchestrator(
        policy,
        {f.id: secret_of[f.id] for f in policy.factors},
        clock=clock,
        rng=rng if rng is not None else secrets.SystemRandom(),
        store=store if store is not None else MemoryChainStore(),
        subject=subject,
        **kwargs,
    )


def complete_chain(orch: MFAOrchestrator, when: float) -> None:
    for factor in orch.initialize_attempt():
        orch.verify_step(code(factor.id, when), factor.id)
    assert orch.current_factor is None


# -- the seed's manual checklist ------------------------------------------------------


def test_happy_path_fixed_mode_asks_the_first_factors_in_order() -> None:
    clock = Clock()
    orch = make(clock)
    chain = orch.initialize_attempt()
    assert [f.id for f in chain] == ["token_1", "token_2"]
    assert orch.current_factor == chain[0]
    first = orch.verify_step(code("token_1", T0), factor_id="token_1")
    assert first == Result(True, False, "Backup Device")
    assert orch.current_factor == chain[1]
    second = orch.verify_step(code("token_2", T0), factor_id="token_2")
    assert second == Result(True, True, "")
    assert orch.current_factor is None


def test_happy_path_random_mode_with_the_seeds_dicts() -> None:
    clock = Clock()
    orch = make(clock, RANDOM)
    chain = orch.initialize_attempt()
    assert len(chain) == 2 and len({f.id for f in chain}) == 2
    first = orch.verify_step(code(chain[0].id, T0), chain[0].id)
    assert first == Result(True, False, chain[1].label)
    assert orch.verify_step(code(chain[1].id, T0), chain[1].id) == Result(True, True, "")


def test_without_factor_id_the_expected_factor_is_checked() -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", T0)).success
    assert orch.verify_step(code("token_2", T0)).is_complete


def test_wrong_code_resets_and_the_chain_restarts_with_the_first_factor() -> None:
    clock = Clock()
    orch = make(clock)
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", T0), "token_1").success
    assert orch.verify_step(wrong("token_2", T0), "token_2") == RESET
    current = orch.current_factor
    assert current is not None and current.label == "Authenticator App"
    clock.now += 30  # the first factor's next code; the one used above is spent
    assert orch.verify_step(code("token_1", clock.now), "token_1").success
    assert orch.verify_step(code("token_2", clock.now), "token_2").is_complete


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", "", "   ", "123 456", "+12345"])
def test_a_badly_shaped_code_resets(typed: str) -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", T0), "token_1").success
    result = orch.verify_step(typed, "token_2")
    assert result == RESET
    assert "malformed" in result.detail
    assert orch.current_factor is not None and orch.current_factor.id == "token_1"


def test_out_of_order_step_raises_the_seeds_message_and_changes_nothing() -> None:
    orch = make(Clock(), max_failures=2)
    orch.initialize_attempt()
    for _ in range(5):
        with pytest.raises(MFAChainBreached) as caught:
            orch.verify_step(code("token_2", T0), factor_id="token_2")
        assert str(caught.value) == "out-of-order step attempt: expected 'token_1' got 'token_2'"
    assert not orch.is_locked_out
    assert orch.verify_step(code("token_1", T0), "token_1").success


def test_verify_before_initialize_raises() -> None:
    with pytest.raises(MFAChainBreached, match="^attempt is not initialized$"):
        make(Clock()).verify_step("123456")


def test_verify_after_completion_raises_until_a_new_attempt() -> None:
    clock = Clock()
    orch = make(clock)
    complete_chain(orch, T0)
    with pytest.raises(MFAChainBreached, match="^attempt already completed$"):
        orch.verify_step(code("token_1", T0 + 30), "token_1")
    clock.now += 30
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", clock.now), "token_1").success


def test_the_breach_is_a_shimmfa_error() -> None:
    assert issubclass(MFAChainBreached, ShimMfaError)


def test_a_long_or_odd_factor_id_is_shortened_in_the_message() -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    with pytest.raises(MFAChainBreached) as caught:
        orch.verify_step("123456", "x" * 10_000 + "\x1b[2J")
    message = str(caught.value)
    assert len(message) < 200
    assert message.startswith("out-of-order step attempt: expected 'token_1' got 'xxx")
    assert "\x1b" not in message


# -- building an orchestrator ---------------------------------------------------------


def test_missing_enrolment_lists_the_factors_and_unknown_secrets_are_refused() -> None:
    store, rng = MemoryChainStore(), secrets.SystemRandom()
    with pytest.raises(
        ValueError, match="^Missing enrollment for required factors: token_2, token_3$"
    ):
        MFAOrchestrator(
            FIXED, {"token_1": SECRETS["token_1"]}, clock=Clock(), rng=rng, store=store, subject="a"
        )
    extra = SECRETS | {"token_9": "JBSWY3DPEHPK3PXP"}
    with pytest.raises(ValueError, match="does not name: token_9"):
        MFAOrchestrator(FIXED, extra, clock=Clock(), rng=rng, store=store, subject="a")


# -- each hole of the seed, closed -----------------------------------------------------


def test_one_factors_secret_cannot_pass_another_factor() -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    # The seed took `secret=` per call, so any valid secret passed any step.
    with pytest.raises(TypeError):
        orch.verify_step(code("token_2", T0), "token_1", secret=SECRETS["token_2"])  # type: ignore[call-arg]
    result = orch.verify_step(code("token_2", T0), "token_1")
    assert result == RESET
    assert "no time step" in result.detail


def test_two_factors_with_one_secret_are_refused() -> None:
    same = SECRETS | {"token_2": SECRETS["token_1"].lower()}
    with pytest.raises(ValueError, match="'token_1' and 'token_2' have the same secret") as caught:
        make(Clock(), secret_of=same)
    assert SECRETS["token_1"] not in str(caught.value)


def test_a_code_cannot_be_replayed_in_a_new_attempt() -> None:
    clock = Clock()
    orch = make(clock)
    complete_chain(orch, T0)
    clock.now += 5
    orch.initialize_attempt()
    result = orch.verify_step(code("token_1", T0), "token_1")
    assert result == RESET
    assert "replay" in result.detail


def test_an_older_code_inside_the_window_is_a_replay_too() -> None:
    orch = make(Clock())
    complete_chain(orch, T0)
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", T0, steps=-1), "token_1") == RESET


def test_the_caller_cannot_widen_the_window() -> None:
    clock = Clock()
    orch = make(clock)  # policy window 1
    orch.initialize_attempt()
    two_steps_old = code("token_1", T0, steps=-2)
    with pytest.raises(TypeError):
        orch.verify_step(two_steps_old, "token_1", window=3)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        orch.policy.window = 3  # type: ignore[misc]
    assert orch.verify_step(two_steps_old, "token_1") == RESET
    assert orch.verify_step(code("token_1", T0, steps=-1), "token_1").success


def test_window_zero_accepts_the_current_step_only() -> None:
    policy = Policy("fixed", 1, SEED_FACTORS, window=0)
    orch = make(Clock(), policy)
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", T0, steps=-1)) == RESET
    assert orch.verify_step(code("token_1", T0)).is_complete


def test_full_width_digits_are_refused() -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    full_width = "".join(chr(0xFF10 + int(c)) for c in code("token_1", T0))
    result = orch.verify_step(full_width, "token_1")
    assert result == RESET
    assert "malformed" in result.detail


def test_whitespace_around_a_code_is_stripped() -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    assert orch.verify_step(f" \t{code('token_1', T0)}\r\n", "token_1").success


def _orders(rng: Any, attempts: int) -> list[tuple[str, ...]]:
    """The orders of `attempts` attempts in a row, each left to expire."""
    clock = Clock()
    orch = make(clock, RANDOM, rng=rng)
    orders = []
    for _ in range(attempts):
        orders.append(tuple(f.id for f in orch.initialize_attempt()))
        clock.now += 300
    return orders


def test_random_seed_0_does_not_make_the_order_predictable() -> None:
    # The seed shuffled with `random`: seeding it replayed every order.
    random.seed(0)
    first = _orders(secrets.SystemRandom(), 40)
    random.seed(0)
    second = _orders(secrets.SystemRandom(), 40)
    assert first != second  # equal by chance with probability 6**-40
    assert len(set(first + second)) == 6  # every ordered pair of 3 factors occurs


def test_the_order_comes_from_the_injected_source_only() -> None:
    same_seed = [_orders(random.Random(7), 10) for _ in range(2)]  # noqa: S311 - a test double
    assert same_seed[0] == same_seed[1]
    assert len(set(same_seed[0])) > 1


def test_initializing_again_does_not_redraw_an_unfinished_attempt() -> None:
    # Otherwise whoever holds two of the three factors re-draws for free until
    # the chain asks for just those two.
    clock = Clock()
    rng = ScriptedRandom(*[["token_3", "token_1"]] + [["token_1", "token_2"]] * 5)
    orch = make(clock, RANDOM, rng=rng, attempt_ttl=300)
    assert [f.id for f in orch.initialize_attempt()] == ["token_3", "token_1"]
    assert orch.verify_step(code("token_3", T0)).success
    clock.now += 299
    assert [f.id for f in orch.initialize_attempt()] == ["token_3", "token_1"]
    assert orch.current_factor is not None and orch.current_factor.id == "token_3"
    clock.now += 299  # restarted with a new start time, so not yet expired
    assert [f.id for f in orch.initialize_attempt()] == ["token_3", "token_1"]
    clock.now += 300  # expired: a new attempt, a new order
    assert [f.id for f in orch.initialize_attempt()] == ["token_1", "token_2"]


def test_random_mode_draws_a_fresh_order_after_a_failure() -> None:
    # One order per call: every step draws the order a RESET would start.
    rng = ScriptedRandom(["token_3", "token_1"], ["token_2", "token_3"], ["token_1", "token_2"])
    orch = make(Clock(), RANDOM, rng=rng)
    assert [f.id for f in orch.initialize_attempt()] == ["token_3", "token_1"]
    assert orch.verify_step(wrong("token_3", T0), "token_3") == RESET
    assert orch.current_factor is not None and orch.current_factor.id == "token_2"
    assert orch.verify_step(code("token_2", T0), "token_2") == Result(True, False, "Hardware Token")


def test_guessing_is_locked_out() -> None:
    clock = Clock()
    orch = make(clock, max_failures=3, lockout_seconds=300)
    orch.initialize_attempt()
    for _ in range(3):
        assert orch.verify_step(wrong("token_1", T0)) == RESET
    assert orch.is_locked_out
    assert orch.locked_until == T0 + 300
    result = orch.verify_step(code("token_1", T0), "token_1")
    assert result == RESET
    assert "locked out" in result.detail
    clock.now = T0 + 299
    assert orch.verify_step(code("token_1", clock.now), "token_1") == RESET
    assert orch.locked_until == T0 + 300  # attempts while locked do not extend it
    clock.now = T0 + 300
    assert not orch.is_locked_out
    assert orch.verify_step(code("token_1", clock.now), "token_1").success


def test_passing_one_factor_gives_no_free_guesses_at_the_next() -> None:
    clock = Clock()
    orch = make(clock, max_failures=3)
    orch.initialize_attempt()
    for _ in range(3):  # whoever holds token_1 guesses token_2, one new code at a time
        clock.now += 30
        assert orch.verify_step(code("token_1", clock.now), "token_1").success
        assert orch.verify_step(wrong("token_2", clock.now), "token_2") == RESET
    assert orch.is_locked_out


def test_a_completed_chain_clears_the_failure_count() -> None:
    clock = Clock()
    orch = make(clock, max_failures=3)
    orch.initialize_attempt()
    for _ in range(2):
        orch.verify_step(wrong("token_1", T0))
    assert orch.verify_step(code("token_1", T0)).success
    assert orch.verify_step(code("token_2", T0)).is_complete
    clock.now += 30
    orch.initialize_attempt()
    for _ in range(2):
        orch.verify_step(wrong("token_1", clock.now))
    assert not orch.is_locked_out


def test_failures_spread_beyond_lockout_seconds_do_not_lock() -> None:
    clock = Clock()
    orch = make(clock, max_failures=3, lockout_seconds=300)
    orch.initialize_attempt()
    for _ in range(2):
        orch.verify_step(wrong("token_1", clock.now))
    clock.now += 301
    for _ in range(2):
        orch.verify_step(wrong("token_1", clock.now))
    assert not orch.is_locked_out


def test_clear_lockout_unlocks_but_keeps_the_replay_floor() -> None:
    clock = Clock()
    orch = make(clock, max_failures=2)
    complete_chain(orch, T0)
    orch.initialize_attempt()
    for _ in range(2):
        orch.verify_step(wrong("token_1", T0))
    assert orch.is_locked_out
    orch.clear_lockout()
    assert not orch.is_locked_out
    assert "replay" in orch.verify_step(code("token_1", T0)).detail


def test_a_restored_orchestrator_keeps_the_lockout_and_the_replay_floor() -> None:
    clock = Clock()
    store = MemoryChainStore()
    first = make(clock, store=store, max_failures=3, lockout_seconds=20)
    complete_chain(first, T0)
    first.initialize_attempt()
    for _ in range(3):
        first.verify_step(wrong("token_1", T0))
    # A restart: the state travels as JSON text (as into the shim's SQLite or
    # the central database) to a new store and a new orchestrator.
    text = json.dumps(store.get("alice").to_dict())
    restored = MemoryChainStore()
    restored.update("alice", lambda _: (ChainState.from_dict(json.loads(text)), None))
    restarted = make(clock, store=restored, max_failures=3, lockout_seconds=20)
    assert restarted.is_locked_out
    assert restarted.locked_until == T0 + 20
    assert "locked out" in restarted.verify_step(code("token_1", T0)).detail
    clock.now = T0 + 20  # the lockout is over; T0's code is still inside the window
    assert code("token_1", T0) == code("token_1", clock.now, steps=-1)
    assert "replay" in restarted.verify_step(code("token_1", T0)).detail
    assert restarted.verify_step(code("token_1", clock.now)).success


def test_a_restored_orchestrator_continues_the_attempt() -> None:
    clock = Clock()
    store = MemoryChainStore()
    first = make(clock, RANDOM, store=store)
    chain = first.initialize_attempt()
    assert first.verify_step(code(chain[0].id, T0), chain[0].id).success
    second = make(clock, RANDOM, store=store)  # e.g. another worker of the central service
    assert second.current_factor == chain[1]
    assert second.verify_step(code(chain[1].id, T0), chain[1].id).is_complete


def test_subjects_do_not_share_state() -> None:
    store = MemoryChainStore()
    alice = make(Clock(), store=store, subject="alice", max_failures=1)
    bob = make(Clock(), store=store, subject="bob")
    alice.initialize_attempt()
    alice.verify_step("000000")
    assert alice.is_locked_out and not bob.is_locked_out
    assert bob.current_factor is None


def test_an_attempt_from_another_policy_counts_as_not_started() -> None:
    store = MemoryChainStore()
    make(Clock(), store=store).initialize_attempt()
    one_step = Policy("fixed", 1, SEED_FACTORS[1:])
    orch = make(Clock(), one_step, store=store)
    assert orch.current_factor is None
    with pytest.raises(MFAChainBreached, match="not initialized"):
        orch.verify_step(code("token_2", T0))


@pytest.mark.parametrize(("elapsed", "completes"), [(299, True), (300, False), (10_000, False)])
def test_an_expired_attempt_cannot_be_completed(elapsed: int, completes: bool) -> None:
    clock = Clock()
    orch = make(clock, attempt_ttl=300, max_failures=1)
    orch.initialize_attempt()
    assert orch.verify_step(code("token_1", T0), "token_1").success
    clock.now = T0 + elapsed
    result = orch.verify_step(code("token_2", clock.now), "token_2")
    assert result.is_complete is completes
    if not completes:
        assert result == RESET
        assert "expired" in result.detail
        assert not orch.is_locked_out  # expiry is not a failure (max_failures=1)
        assert orch.current_factor is not None and orch.current_factor.id == "token_1"


def test_a_restart_after_a_failure_gets_a_fresh_time_to_live() -> None:
    clock = Clock()
    orch = make(clock, attempt_ttl=300)
    orch.initialize_attempt()
    clock.now = T0 + 200
    assert orch.verify_step(wrong("token_1", clock.now)) == RESET
    clock.now = T0 + 400
    assert orch.verify_step(code("token_1", clock.now)).success


def test_each_step_commits_exactly_one_update() -> None:
    store = CountingStore()
    orch = make(Clock(), store=store)
    orch.initialize_attempt()
    for typed, factor_id in [(wrong("token_1", T0), None), (code("token_1", T0), "token_1")]:
        before = store.updates
        orch.verify_step(typed, factor_id)
        assert store.updates == before + 1


def test_secrets_appear_in_no_message_repr_or_detail() -> None:
    clock = Clock()
    orch = make(clock, max_failures=2)
    texts = [repr(orch), str(orch)]
    orch.initialize_attempt()
    for typed in (wrong("token_1", T0), SECRETS["token_1"], code("token_1", T0)):
        texts.append(repr(orch.verify_step(typed)))
    with pytest.raises(ValueError) as caught:
        make(clock, secret_of=SECRETS | {"token_2": "not base32!"})
    texts.append(str(caught.value))
    assert "not base32!" not in texts[-1] and "token_2" in texts[-1]
    for secret in SECRETS.values():
        assert not any(secret in text or secret.lower() in text for text in texts)


# -- known answers ----------------------------------------------------------------------


def _rfc_factor(algorithm: str, factor_id: str) -> tuple[FactorDefinition, str]:
    secret = base64.b32encode(RFC["seeds"][algorithm].encode("ascii")).decode()
    return FactorDefinition(factor_id, f"{algorithm} token", algorithm=algorithm, digits=8), secret


@pytest.mark.parametrize("vector", RFC["totp"], ids=lambda v: f"{v['algorithm']}-{v['time']}")
def test_rfc6238_vectors_complete_a_one_factor_chain(vector: dict[str, Any]) -> None:
    factor, secret = _rfc_factor(vector["algorithm"], "rfc")
    orch = make(
        Clock(float(vector["time"])), Policy("fixed", 1, [factor]), secret_of={"rfc": secret}
    )
    orch.initialize_attempt()
    assert orch.verify_step(vector["code"], "rfc") == Result(True, True, "")


def test_rfc6238_vectors_chain_factors_with_their_own_algorithms() -> None:
    sha1, sha1_secret = _rfc_factor("SHA1", "sha1")
    sha512, sha512_secret = _rfc_factor("SHA512", "sha512")
    policy = Policy("fixed", 2, [sha1, sha512])
    orch = make(Clock(59.0), policy, secret_of={"sha1": sha1_secret, "sha512": sha512_secret})
    orch.initialize_attempt()
    # RFC 6238 Appendix B at T = 59 s: SHA1 94287082, SHA512 90693936.
    assert orch.verify_step("94287082", "sha1") == Result(True, False, "SHA512 token")
    assert orch.verify_step("90693936", "sha512") == Result(True, True, "")


def test_a_factor_uses_its_own_period_and_digits() -> None:
    slow = FactorDefinition("slow", "Slow token", digits=8, period=60)
    orch = make(Clock(), Policy("fixed", 1, [slow]), secret_of={"slow": SECRETS["token_1"]})
    orch.initialize_attempt()
    key = decode_secret(SECRETS["token_1"])
    assert orch.verify_step(totp_code(key, int(T0) // 60, 8, "SHA1")).is_complete


# -- properties ---------------------------------------------------------------------------

# What is typed at a step; a right code is the most common, so chains complete.
KINDS = (
    ["right"] * 3
    + ["right_named"] * 2
    + ["other_factor", "replay", "wrong", "junk", "misnamed", "init"]
)
junk = st.one_of(st.text(max_size=30), st.text(min_size=900, max_size=1100))
# Seconds the clock moves before a step: mostly within one attempt, sometimes
# past its time to live (120 s) or a lockout (100 s).
seconds = st.one_of(st.sampled_from([0, 0, 0, 5, 30]), st.integers(0, 250))
steps = st.lists(st.tuples(st.sampled_from(KINDS), seconds, junk), min_size=1, max_size=30)


def _accepted_codes(factor_id: str, when: float) -> set[str]:
    return {code(factor_id, when, k) for k in (-1, 0, 1)}


@given(seed=st.integers(0, 2**32), actions=steps)
@settings(max_examples=250, deadline=None)
def test_any_steps_give_a_result_or_a_breach_and_only_every_right_code_completes(
    seed: int, actions: list[tuple[str, int, str]]
) -> None:
    clock = Clock()
    rng = random.Random(seed)  # noqa: S311 - reproducible orders for hypothesis
    orch = make(clock, RANDOM, rng=rng, max_failures=4, lockout_seconds=100, attempt_ttl=120)
    orch.initialize_attempt()
    passed: list[str] = []  # factors passed with a right code since the last restart
    typed_right: list[str] = []
    for kind, advance, text in actions:
        clock.now += advance
        current = orch.current_factor
        if kind == "init":
            orch.initialize_attempt()
            passed = []
            continue
        named: str | None = None
        if current is not None and kind in ("right", "right_named"):
            text = code(current.id, clock.now)
            named = current.id if kind == "right_named" else None
        elif current is not None and kind == "other_factor":
            text = code(next(f for f in SECRETS if f != current.id), clock.now)
        elif kind == "replay" and typed_right:
            text = typed_right[-1]
        elif current is not None and kind == "wrong":
            text = wrong(current.id, clock.now)
        elif kind == "misnamed":
            named = text or "nobody"
        try:
            result = orch.verify_step(text, named)
        except MFAChainBreached:
            assert orch.current_factor == current  # a breach changes nothing
            continue
        assert isinstance(result, Result)
        if not result.success:
            assert result == RESET and not result.is_complete
            passed = []
            continue
        assert current is not None
        assert text.strip() in _accepted_codes(current.id, clock.now)
        typed_right.append(text)
        passed.append(current.id)
        if result.is_complete:
            assert len(passed) == RANDOM.required_steps == len(set(passed))
            passed = []
        else:
            assert result.next_factor_label == LABELS[orch.current_factor.id]  # type: ignore[union-attr]


@given(typed=st.one_of(junk, st.binary(), st.none(), st.integers()), named=st.none() | junk)
@settings(max_examples=200)
def test_any_input_of_any_type_gives_a_result_or_a_breach(typed: Any, named: Any) -> None:
    orch = make(Clock())
    orch.initialize_attempt()
    try:
        result = orch.verify_step(typed, named)
    except MFAChainBreached as exc:
        assert str(exc).startswith("out-of-order step attempt: expected 'token_1' got '")
    else:
        assert isinstance(result, Result)
        assert result == RESET or typed.strip() == code("token_1", T0)
