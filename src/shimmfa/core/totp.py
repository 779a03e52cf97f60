"""TOTP verification (RFC 6238 over RFC 4226) with durable, monotonic replay
protection and lockout.

Rules of this module:

- The HOTP value comes from `cryptography`; which counters are tried, replay
  and lockout are decided here.
- A code is exactly `digits` ASCII digits once surrounding whitespace is
  stripped (`wellformed_code`); anything else, full-width digits included, is
  a format failure, and the window is still computed so the time is the same.
- The window is fixed by the server (`TotpPolicy.window`, at most 3); no caller
  can widen it, and each attempt costs 2*window+1 HMACs whatever the outcome.
- A code is accepted only if its counter is strictly greater than the last
  accepted counter of that technician: an older code inside the window is a
  REPLAY, and so is any code after a restart (the counter is stored durably
  through `AuthStateStore`).
- `max_failures` failures within `lockout_seconds` lock the technician for
  `lockout_seconds`. An attempt during a lockout neither extends it nor is
  checked against the code.
- Unknown technician IDs leave no per-ID state: they all share one bounded
  bookkeeping row (`UNKNOWN_KEY`), so every attempt commits exactly one state
  change, whatever its outcome, and takes the same time.
- `TotpGate.authenticate` never raises for any input; it returns an
  `AuthOutcome`. The precise reason is in `detail`, for the audit log only.
- The clock and the random source are arguments (`generate_totp_secret`
  defaults to the OS CSPRNG, as the seed did). Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol, TypeVar
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.hotp import HOTP

__all__ = [
    "ALGORITHMS",
    "MAX_WINDOW",
    "UNKNOWN_KEY",
    "AuthOutcome",
    "AuthResult",
    "AuthState",
    "AuthStateStore",
    "InvalidSecretError",
    "MemoryAuthStore",
    "TechnicianRecord",
    "TotpGate",
    "TotpPolicy",
    "decode_secret",
    "generate_totp_secret",
    "matching_counter",
    "provisioning_uri",
    "totp_code",
    "wellformed_code",
]

MAX_WINDOW = 3
MAX_CODE_CHARS = 64
UNKNOWN_KEY = " unknown"  # technician IDs never contain whitespace
ALGORITHMS: dict[str, type[hashes.SHA1 | hashes.SHA256 | hashes.SHA512]] = {
    "SHA1": hashes.SHA1,
    "SHA256": hashes.SHA256,
    "SHA512": hashes.SHA512,
}
_DIGITS = frozenset("0123456789")
_DUMMY_KEY = bytes(20)

T = TypeVar("T")


class InvalidSecretError(ValueError):
    """A TOTP secret is not valid base32 text."""


class AuthResult(StrEnum):
    OK = "OK"
    BAD_USER = "BAD_USER"
    BAD_CODE = "BAD_CODE"
    REPLAY = "REPLAY"
    LOCKED_OUT = "LOCKED_OUT"
    FORMAT = "FORMAT"
    RATE_LIMITED = "RATE_LIMITED"


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """What one authentication attempt decided. `period` is the accepted TOTP
    counter (time step), or None when nothing was accepted."""

    result: AuthResult
    technician_id: str
    period: int | None
    detail: str

    @property
    def authenticated(self) -> bool:
        return self.result is AuthResult.OK


@dataclass(frozen=True, slots=True)
class TechnicianRecord:
    """An enrolled technician. `digits`/`period`/`algorithm` of None take the
    gate's policy values."""

    technician_id: str
    totp_secret: str = field(repr=False)
    enrolment_date: str = ""
    notes: str = ""
    algorithm: str | None = None
    digits: int | None = None
    period: int | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TotpPolicy:
    period: int = 30
    digits: int = 6
    window: int = 1
    max_failures: int = 5
    lockout_seconds: float = 300.0
    algorithm: str = "SHA1"

    def __post_init__(self) -> None:
        if not 0 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be between 0 and {MAX_WINDOW}, not {self.window}")
        if self.digits not in (6, 8):
            raise ValueError(f"digits must be 6 or 8, not {self.digits}")
        if self.period < 1:
            raise ValueError(f"period must be at least 1 second, not {self.period}")
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, not {self.max_failures}")
        if self.lockout_seconds < 0:
            raise ValueError("lockout_seconds must not be negative")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")


@dataclass(frozen=True, slots=True)
class AuthState:
    """Durable per-technician authentication state."""

    last_counter: int = -1
    failures: int = 0
    failures_since: float = 0.0
    locked_until: float = 0.0
    attempts: int = 0


class AuthStateStore(Protocol):
    """The one seam to durable state: apply `change` to the stored state of
    `key` atomically, store what it returns and commit before returning."""

    def update(self, key: str, change: Callable[[AuthState], tuple[AuthState, T]]) -> T: ...

    def get(self, key: str) -> AuthState: ...


class MemoryAuthStore:
    """In-memory `AuthStateStore` (tests, and the seed's non-durable API)."""

    def __init__(self) -> None:
        self._states: dict[str, AuthState] = {}
        self._lock = threading.Lock()

    def update(self, key: str, change: Callable[[AuthState], tuple[AuthState, T]]) -> T:
        with self._lock:
            new, result = change(self._states.get(key, AuthState()))
            self._states[key] = new
            return result

    def get(self, key: str) -> AuthState:
        with self._lock:
            return self._states.get(key, AuthState())


def decode_secret(text: str) -> bytes:
    """Base32 secret text (any case, spaces and missing padding allowed) -> key."""
    cleaned = "".join(text.split()).upper().rstrip("=")
    if not cleaned or not cleaned.isascii():
        raise InvalidSecretError("not valid base32 text")
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        key = base64.b32decode(padded, casefold=False)
    except (binascii.Error, ValueError):
        raise InvalidSecretError("not valid base32 text") from None
    if not key:
        raise InvalidSecretError("empty secret")
    return key


def totp_code(key: bytes, counter: int, digits: int, algorithm: str) -> str:
    """The HOTP value for `counter` (RFC 4226), as `digits` ASCII digits."""
    hotp = HOTP(key, digits, ALGORITHMS[algorithm](), enforce_key_length=False)
    return hotp.generate(counter).decode("ascii")


def generate_totp_secret(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new 160-bit secret as 32 base32 characters. The random source is
    an argument (tests pass their own); the default is the OS CSPRNG, as in
    the seed's `generate_totp_secret()`."""
    return base64.b32encode(randbytes(20)).decode("ascii")


def provisioning_uri(
    technician_id: str,
    secret: str,
    issuer: str = "ShimMFA",
    *,
    digits: int = 6,
    period: int = 30,
    algorithm: str = "SHA1",
) -> str:
    """otpauth:// URI for authenticator apps (Key Uri Format)."""
    label = quote(f"{issuer}:{technician_id}", safe=":")
    query = urlencode(
        {
            "secret": "".join(secret.split()).upper().rstrip("="),
            "issuer": issuer,
            "algorithm": algorithm,
            "digits": digits,
            "period": period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def wellformed_code(code: object, digits: int) -> str | None:
    """`code` without surrounding whitespace if that is exactly `digits` ASCII
    digits, else None. Anything that is not `str`, or is longer than
    `MAX_CODE_CHARS` before stripping, is None: the work is bounded."""
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        return None
    code = code.strip()
    if len(code) == digits and all(c in _DIGITS for c in code):
        return code
    return None


def matching_counter(
    key: bytes, code: str, now_counter: int, window: int, digits: int, algorithm: str
) -> int | None:
    """Highest counter in `now_counter` +/- `window` whose code equals `code`
    (compared with `hmac.compare_digest`). Every counter is computed and
    compared, so the cost does not depend on the answer."""
    given = code.encode("ascii", "replace")
    found: int | None = None
    for counter in range(now_counter - window, now_counter + window + 1):
        if counter < 0:
            continue
        if hmac.compare_digest(totp_code(key, counter, digits, algorithm).encode(), given):
            found = counter
    return found


class TotpGate:
    """Authenticates technicians by TOTP. Seed-compatible constructor; the
    clock (`time_source`) is required and `store` makes the state durable."""

    def __init__(
        self,
        users: Mapping[str, TechnicianRecord],
        *,
        time_source: Callable[[], float],
        period: int = 30,
        digits: int = 6,
        window: int = 1,
        max_failures: int = 5,
        lockout_seconds: float = 300.0,
        algorithm: str = "SHA1",
        store: AuthStateStore | None = None,
    ) -> None:
        self._users = users
        self._now = time_source
        self.policy = TotpPolicy(period, digits, window, max_failures, lockout_seconds, algorithm)
        self._store: AuthStateStore = store if store is not None else MemoryAuthStore()

    def authenticate(self, technician_id: str, code: str) -> AuthOutcome:
        try:
            return self._authenticate(technician_id, code)
        except Exception as exc:  # never raise; an internal failure denies
            return AuthOutcome(
                AuthResult.BAD_CODE, technician_id, None, f"internal error: {type(exc).__name__}"
            )

    def is_locked_out(self, technician_id: str) -> bool:
        return self._store.get(technician_id).locked_until > self._now()

    def reset_user(self, technician_id: str) -> None:
        """Clear failures and lockout. The replay counter is kept."""

        def change(state: AuthState) -> tuple[AuthState, None]:
            return replace(state, failures=0, failures_since=0.0, locked_until=0.0), None

        self._store.update(technician_id, change)

    def _authenticate(self, technician_id: str, code: str) -> AuthOutcome:
        now = self._now()
        record = self._lookup(technician_id)
        policy = self.policy
        period = record.period if record and record.period else policy.period
        digits = record.digits if record and record.digits else policy.digits
        algorithm = record.algorithm if record and record.algorithm else policy.algorithm
        given = wellformed_code(code, digits)
        wellformed = given is not None
        key = _DUMMY_KEY
        if record is not None:
            try:
                key = decode_secret(record.totp_secret)
            except InvalidSecretError:
                record = None
        now_counter = int(now // period)
        matched = matching_counter(
            key, given or "0" * digits, now_counter, policy.window, digits, algorithm
        )
        if record is None:
            return self._store.update(UNKNOWN_KEY, _count_unknown(technician_id))
        return self._store.update(
            technician_id, _decide(technician_id, now, wellformed, matched, now_counter, policy)
        )

    def _lookup(self, technician_id: str) -> TechnicianRecord | None:
        if not isinstance(technician_id, str) or not technician_id or technician_id.isspace():
            return None
        try:
            return self._users.get(technician_id)
        except Exception:
            return None


def _count_unknown(
    technician_id: str,
) -> Callable[[AuthState], tuple[AuthState, AuthOutcome]]:
    def change(state: AuthState) -> tuple[AuthState, AuthOutcome]:
        outcome = AuthOutcome(AuthResult.BAD_USER, technician_id, None, "unknown technician")
        return replace(state, attempts=state.attempts + 1), outcome

    return change


def _decide(
    technician_id: str,
    now: float,
    wellformed: bool,
    matched: int | None,
    now_counter: int,
    policy: TotpPolicy,
) -> Callable[[AuthState], tuple[AuthState, AuthOutcome]]:
    def change(state: AuthState) -> tuple[AuthState, AuthOutcome]:
        counted = replace(state, attempts=state.attempts + 1)
        if state.locked_until > now:
            detail = f"locked out for another {state.locked_until - now:.0f} s"
            return counted, AuthOutcome(AuthResult.LOCKED_OUT, technician_id, None, detail)
        if not wellformed:
            return _fail(counted, now, policy, technician_id, AuthResult.FORMAT, "malformed code")
        if matched is None:
            detail = f"code matches no time step within +/-{policy.window} of {now_counter}"
            return _fail(counted, now, policy, technician_id, AuthResult.BAD_CODE, detail)
        if matched <= state.last_counter:
            detail = f"time step {matched} not after last accepted {state.last_counter}"
            return _fail(counted, now, policy, technician_id, AuthResult.REPLAY, detail)
        accepted = replace(
            counted, last_counter=matched, failures=0, failures_since=0.0, locked_until=0.0
        )
        detail = f"time step {matched} (offset {matched - now_counter:+d})"
        return accepted, AuthOutcome(AuthResult.OK, technician_id, matched, detail)

    return change


def _fail(
    state: AuthState,
    now: float,
    policy: TotpPolicy,
    technician_id: str,
    result: AuthResult,
    detail: str,
) -> tuple[AuthState, AuthOutcome]:
    if state.failures == 0 or now - state.failures_since > policy.lockout_seconds:
        state = replace(state, failures=0, failures_since=now)
    failures = state.failures + 1
    if failures >= policy.max_failures:
        state = replace(
            state, failures=0, failures_since=0.0, locked_until=now + policy.lockout_seconds
        )
        detail += f"; {failures} failures: locked for {policy.lockout_seconds:.0f} s"
    else:
        state = replace(state, failures=failures)
    return state, AuthOutcome(result, technician_id, None, detail)
