"""MFA chains: several TOTP factors in a fixed or random order, restarted on
any failure. Seed 003's API (mfa-chain-orchestrator), without its holes.

Rules of this module:

- The `Policy` (`core.chain_policy`) fixes the mode, the number of steps and
  the window. Fixed mode asks for the first `required_steps` factors in order;
  random mode draws `required_steps` factors in a fresh order from the injected
  `rng` for every attempt and after every RESET. Callers pass
  `secrets.SystemRandom()`; core never picks a random source of its own.
- An attempt lasts until it completes, fails or expires. Calling
  `initialize_attempt()` within it restarts it at its first step with the same
  order: a new draw costs a failure (or waiting out `attempt_ttl`), so whoever
  holds only some of the factors cannot re-draw for free until the draw asks
  for just those.
- Each factor's secret is bound to it when the orchestrator is built
  (`secrets={factor_id: base32}`): no call takes a secret or a window. Every
  factor of the policy needs its own secret; two factors sharing one are
  refused, since that would be one factor asked twice.
- `verify_step` raises `MFAChainBreached` only for calls the caller must fix:
  before `initialize_attempt()`, after the attempt completed, or naming
  (`factor_id`) another factor than the one expected. Such a call changes
  nothing. It raises nothing else for any `user_input` or `factor_id`.
- Every other outcome is a `Result`. Success says the next factor's label, or
  completion. Any failure is `Result(False, False, RESET_LABEL)` and restarts
  the attempt at its first step, with a new start time and, in random mode, a
  new order. `Result.detail` says why (malformed, wrong code, replay, locked
  out, expired), for the audit log only; never show it to the person.
- A code is `totp.wellformed_code` (exactly `digits` ASCII digits once
  surrounding whitespace is stripped) and matches by `totp.matching_counter`:
  constant time over the window, computed whatever the outcome.
- Replay: a factor's code is accepted only if its time step is after the last
  one accepted for that subject and factor, in any attempt, across restarts.
- Lockout: malformed codes, wrong codes and replays are failures;
  `max_failures` of them within `lockout_seconds` lock the subject for
  `lockout_seconds`. While locked, every step is RESET without looking at the
  code, and does not extend the lockout. Only a completed chain clears the
  count: passing one factor does not, so whoever holds one factor gets no
  free guesses at the next.
- Expiry: an attempt expires `attempt_ttl` seconds after it (re)started. A step
  after that is RESET ("attempt expired") without looking at the code and
  without counting as a failure.
- State: all of it lives in the `ChainStateStore` under `subject`; each
  `verify_step` commits exactly one update. A new orchestrator over the same
  store carries on: attempt, lockout and replay floors. A stored attempt that
  names factors this policy does not have counts as not started. A subject
  has one attempt at a time.
- The clock, the random source and the store are arguments. Nothing here does
  I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from shimmfa.core.chain_policy import MODES, RESET_LABEL, FactorDefinition, Policy
from shimmfa.core.chain_state import ChainState, ChainStateStore
from shimmfa.core.totp import InvalidSecretError, decode_secret, matching_counter, wellformed_code
from shimmfa.errors import MFAChainBreached

__all__ = [
    "MODES",
    "RESET_LABEL",
    "FactorDefinition",
    "MFAChainBreached",
    "MFAOrchestrator",
    "Policy",
    "RandomSource",
    "Result",
]

_ECHO_CHARS = 64

T = TypeVar("T")


class RandomSource(Protocol):
    """What a chain draws its random order from: `secrets.SystemRandom()`."""

    def sample(self, population: Sequence[T], k: int) -> list[T]: ...


@dataclass(frozen=True, slots=True)
class Result:
    """What one step decided (seed 003's three fields). `detail` is the precise
    reason for the audit log; it takes no part in equality."""

    success: bool
    is_complete: bool
    next_factor_label: str
    detail: str = field(default="", compare=False)


class MFAOrchestrator:
    """Runs one subject's chain attempts under `policy`. Give it
    `secrets.SystemRandom()` as `rng`, the wall clock as `clock`, and a
    durable `store` (the shim's state DB, the central database)."""

    __slots__ = (
        "_attempt_ttl",
        "_clock",
        "_factors",
        "_keys",
        "_lockout_seconds",
        "_max_failures",
        "_policy",
        "_rng",
        "_store",
        "_subject",
    )

    def __init__(
        self,
        policy: Policy,
        secrets: Mapping[str, str],
        *,
        clock: Callable[[], float],
        rng: RandomSource,
        store: ChainStateStore,
        subject: str,
        max_failures: int = 5,
        lockout_seconds: float = 300.0,
        attempt_ttl: float = 300.0,
    ) -> None:
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be non-empty text (whose chain this is)")
        if not isinstance(max_failures, int) or max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, not {max_failures!r}")
        if not lockout_seconds >= 0:
            raise ValueError("lockout_seconds must not be negative")
        if not attempt_ttl > 0:
            raise ValueError("attempt_ttl must be more than 0 seconds")
        self._policy = policy
        self._factors = {factor.id: factor for factor in policy.factors}
        self._keys = _bind_secrets(policy, secrets)
        self._clock = clock
        self._rng = rng
        self._store = store
        self._subject = subject
        self._max_failures = max_failures
        self._lockout_seconds = float(lockout_seconds)
        self._attempt_ttl = float(attempt_ttl)

    def __repr__(self) -> str:
        return f"MFAOrchestrator(subject={self._subject!r}, policy={self._policy!r})"

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def current_factor(self) -> FactorDefinition | None:
        """The factor the attempt expects next; None before an attempt has
        started and after it completed."""
        state = self._store.get(self._subject)
        if not self._is_ours(state) or state.complete:
            return None
        return self._factors[state.order[state.step]]

    @property
    def locked_until(self) -> float:
        """When the subject's lockout ends (clock time); 0.0 if never locked."""
        return self._store.get(self._subject).locked_until

    @property
    def is_locked_out(self) -> bool:
        return self.locked_until > self._clock()

    def initialize_attempt(self) -> list[FactorDefinition]:
        """Start an attempt at its first step and return its factors in the
        order they will be asked for. An unfinished attempt that has not
        expired keeps its order (restarted, with a new start time); otherwise
        the order is drawn anew."""
        drawn, now = self._draw(), self._clock()

        def change(state: ChainState) -> tuple[ChainState, tuple[str, ...]]:
            unfinished = self._is_ours(state) and not state.complete
            keep = unfinished and now - state.started_at < self._attempt_ttl
            order = state.order if keep else drawn
            return replace(state, order=order, step=0, started_at=now), order

        order = self._store.update(self._subject, change)
        return [self._factors[factor_id] for factor_id in order]

    def clear_lockout(self) -> None:
        """End the lockout and forget failures (an authorised, audited unlock).
        Replay floors and the attempt are kept."""

        def change(state: ChainState) -> tuple[ChainState, None]:
            return replace(state, failures=0, failures_since=0.0, locked_until=0.0), None

        self._store.update(self._subject, change)

    def verify_step(self, user_input: str, factor_id: str | None = None) -> Result:
        """Check `user_input` against the factor the attempt expects. With
        `factor_id`, also check that it is that factor (seed: strict order)."""
        now, fresh = self._clock(), self._draw()
        outcome = self._store.update(
            self._subject, lambda state: self._decide(state, user_input, factor_id, now, fresh)
        )
        if isinstance(outcome, str):
            raise MFAChainBreached(outcome)
        return outcome

    def _decide(
        self,
        state: ChainState,
        user_input: object,
        factor_id: object,
        now: float,
        fresh: tuple[str, ...],
    ) -> tuple[ChainState, Result | str]:
        if not self._is_ours(state):
            return state, "attempt is not initialized"
        if state.complete:
            return state, "attempt already completed"
        factor = self._factors[state.order[state.step]]
        if factor_id is not None and not (isinstance(factor_id, str) and factor_id == factor.id):
            return (
                state,
                f"out-of-order step attempt: expected '{factor.id}' got '{_echo(factor_id)}'",
            )
        given = wellformed_code(user_input, factor.digits)
        now_counter = int(now // factor.period)
        matched = matching_counter(
            self._keys[factor.id],
            given or "0" * factor.digits,
            now_counter,
            self._policy.window,
            factor.digits,
            factor.algorithm,
        )
        restarted = replace(state, order=fresh, step=0, started_at=now)
        if state.locked_until > now:
            left = f"locked out for another {state.locked_until - now:.0f} s"
            return restarted, Result(False, False, RESET_LABEL, left)
        if now - state.started_at >= self._attempt_ttl:
            detail = f"attempt expired ({self._attempt_ttl:.0f} s); not checked"
            return restarted, Result(False, False, RESET_LABEL, detail)
        if given is None:
            return self._fail(restarted, now, f"factor '{factor.id}': malformed code")
        if matched is None:
            window = f"+/-{self._policy.window} of {now_counter}"
            return self._fail(restarted, now, f"factor '{factor.id}': no time step {window}")
        floor = state.floor(factor.id)
        if matched <= floor:
            detail = f"factor '{factor.id}': replay, time step {matched} not after {floor}"
            return self._fail(restarted, now, detail)
        advanced = replace(state.with_floor(factor.id, matched), step=state.step + 1)
        detail = f"factor '{factor.id}': time step {matched} (offset {matched - now_counter:+d})"
        if advanced.complete:
            cleared = replace(advanced, failures=0, failures_since=0.0)
            return cleared, Result(True, True, "", detail)
        label = self._factors[advanced.order[advanced.step]].label
        return advanced, Result(True, False, label, detail)

    def _fail(self, state: ChainState, now: float, detail: str) -> tuple[ChainState, Result]:
        if state.failures == 0 or now - state.failures_since > self._lockout_seconds:
            state = replace(state, failures=0, failures_since=now)
        failures = state.failures + 1
        if failures >= self._max_failures:
            until = now + self._lockout_seconds
            state = replace(state, failures=0, failures_since=0.0, locked_until=until)
            detail += f"; {failures} failures: locked for {self._lockout_seconds:.0f} s"
        else:
            state = replace(state, failures=failures)
        return state, Result(False, False, RESET_LABEL, detail)

    def _draw(self) -> tuple[str, ...]:
        steps = self._policy.required_steps
        if self._policy.mode == "fixed":
            return tuple(factor.id for factor in self._policy.factors[:steps])
        return tuple(factor.id for factor in self._rng.sample(self._policy.factors, steps))

    def _is_ours(self, state: ChainState) -> bool:
        """Whether the stored attempt is one this policy could have drawn."""
        return (
            state.started
            and len(state.order) == self._policy.required_steps
            and all(factor_id in self._factors for factor_id in state.order)
            and (self._policy.mode == "random" or state.order == self._draw())
        )


def _bind_secrets(policy: Policy, secrets: Mapping[str, str]) -> dict[str, bytes]:
    """Decode each factor's secret once. Messages name factors, never secrets."""
    missing = [factor.id for factor in policy.factors if factor.id not in secrets]
    if missing:
        raise ValueError(f"Missing enrollment for required factors: {', '.join(missing)}")
    unknown = sorted(set(secrets) - {factor.id for factor in policy.factors})
    if unknown:
        raise ValueError(
            f"secrets given for factors the policy does not name: {', '.join(unknown)}"
        )
    keys: dict[str, bytes] = {}
    owners: dict[bytes, str] = {}
    for factor in policy.factors:
        text = secrets[factor.id]
        try:
            key = decode_secret(text) if isinstance(text, str) else b""
        except InvalidSecretError:
            key = b""
        if not key:
            raise ValueError(f"the secret of factor '{factor.id}' is not valid base32 text")
        if key in owners:
            raise ValueError(
                f"factors '{owners[key]}' and '{factor.id}' have the same secret: "
                "enrol a separate secret for each factor"
            )
        owners[key] = factor.id
        keys[factor.id] = key
    return keys


def _echo(value: object) -> str:
    """A caller's factor id, fit for an error message: printable and short."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _ECHO_CHARS or not text.isprintable():
        text = repr(text[:_ECHO_CHARS])[1:-1] + ("..." if len(text) > _ECHO_CHARS else "")
    return text
