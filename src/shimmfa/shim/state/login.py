"""A login at the port: the login line's code, then, with `gate.policy`, the
technician's further factors as an MFA chain (`core.chain`). This is the
relay's `Authenticator`.

Rules:
- The login line's code is always the technician's first factor, checked
  by `core.totp.TotpGate` (its replay floor and lockout, as without a
  chain). With `gate.policy`, `required_steps - 1` further codes follow,
  from the technician's `factors`, in their order (`fixed`) or drawn at
  random for every attempt (`random`, from `secrets.SystemRandom`).
  Without a policy, a technician who has further factors is asked for all
  of them, in order (window `totp.window`); one who has none logs in with
  one code, the seed's dialogue byte for byte.
- Any failure at any step ends the attempt: the technician starts again
  from the banner. A technician with fewer factors than the policy needs is
  refused like a wrong code (the log says why).
- The chain's state (replay floors, lockout, the attempt) is in the state
  DB (`factors.ChainStore`): a restart resets neither.
- Without a policy (or `required_steps` 1) this is the TOTP gate alone.
- `breakglass <code>` never gets a chain: a quorum released its code.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from shimmfa.core.chain import MFAOrchestrator, Policy
from shimmfa.core.gate import BREAKGLASS_ID
from shimmfa.core.totp import AuthOutcome, AuthResult, TotpGate
from shimmfa.errors import MFAChainBreached
from shimmfa.shim.settings import PolicySection, Settings, TotpSection
from shimmfa.shim.state.factors import ChainStore, Factor, factors_of
from shimmfa.shim.state.store import StateStore

__all__ = ["ShimLogin"]


class ShimLogin:
    def __init__(
        self,
        gate: TotpGate,
        policy: PolicySection | None,
        factors: Callable[[str], list[Factor]],
        chains: ChainStore,
        *,
        totp: TotpSection | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gate = gate
        self._policy = policy
        self._totp = totp or TotpSection()
        self._factors = factors
        self._chains = chains
        self._clock = clock
        self._rng = secrets.SystemRandom()
        self._attempts: dict[str, MFAOrchestrator] = {}

    @classmethod
    def for_shim(
        cls,
        settings: Settings,
        store: StateStore,
        gate: TotpGate,
        *,
        clock: Callable[[], float] = time.time,
    ) -> ShimLogin:
        return cls(
            gate,
            settings.gate.policy,
            lambda technician_id: factors_of(settings, store, technician_id),
            ChainStore(store),
            totp=settings.totp,
            clock=clock,
        )

    def authenticate(self, technician_id: str, code: str) -> AuthOutcome:
        """The login line: the first factor, and the chain started if the
        policy asks for more."""
        self._attempts.pop(technician_id, None)
        outcome = self._gate.authenticate(technician_id, code)
        if not outcome.authenticated or technician_id == BREAKGLASS_ID:
            return outcome  # break-glass: the quorum that released the code is its MFA
        extra = self._factors(technician_id)
        policy = self._policy or self._own_policy(len(extra))
        needed = policy.required_steps - 1
        if needed < 1:
            return outcome
        if len(extra) < needed:
            return _refused(
                technician_id,
                f"the policy needs {needed} more factor(s); {technician_id} has {len(extra)}",
            )
        chain = MFAOrchestrator(
            Policy(policy.mode, needed, [f.definition for f in extra], policy.window),
            {f.definition.id: f.secret for f in extra},
            clock=self._clock,
            rng=self._rng,
            store=self._chains,
            subject=technician_id,
            max_failures=policy.max_failures,
            lockout_seconds=policy.lockout_seconds,
            attempt_ttl=policy.attempt_ttl,
        )
        if chain.is_locked_out:
            return _refused(technician_id, "the chain is locked out", AuthResult.LOCKED_OUT)
        chain.initialize_attempt()
        self._attempts[technician_id] = chain
        return outcome

    def _own_policy(self, factors: int) -> PolicySection:
        """No `gate.policy`: every factor the technician has, in order."""
        totp = self._totp
        return PolicySection(
            mode="fixed",
            required_steps=1 + factors,
            window=totp.window,
            max_failures=totp.max_failures,
            lockout_seconds=totp.lockout_seconds,
        )

    def next_factor(self, technician_id: str) -> str | None:
        """The label of the factor to ask for next; None when none is."""
        chain = self._attempts.get(technician_id)
        factor = chain.current_factor if chain is not None else None
        if factor is None:
            self._attempts.pop(technician_id, None)
            return None
        return factor.label

    def verify_factor(self, technician_id: str, code: str) -> AuthOutcome:
        """A further factor's code (the line as typed)."""
        chain = self._attempts.get(technician_id)
        if chain is None:
            return _refused(technician_id, "no chain attempt is open")
        factor = chain.current_factor
        try:
            result = chain.verify_step(code)
        except MFAChainBreached as exc:
            self._attempts.pop(technician_id, None)
            return _refused(technician_id, f"chain: {exc}")
        label = factor.label if factor is not None else "?"
        if not result.success:
            self._attempts.pop(technician_id, None)
            locked = "locked" in result.detail
            return _refused(
                technician_id,
                f"factor {label!r}: {result.detail}",
                AuthResult.LOCKED_OUT if locked else AuthResult.BAD_CODE,
            )
        return AuthOutcome(AuthResult.OK, technician_id, None, f"factor {label!r} accepted")


def _refused(
    technician_id: str, detail: str, result: AuthResult = AuthResult.BAD_CODE
) -> AuthOutcome:
    return AuthOutcome(result, technician_id, None, detail)
