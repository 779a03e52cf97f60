"""The central service's domain errors. The services raise them; the web
layer maps each class to one HTTP status in one place (`api/errors.py`) and
answers `{"code": ..., "message": ...}`; the CLI prints the message.

Rules:
- `code` is a short, stable string a client can branch on; `message` tells a
  person what happened, never a secret, never which part of a login failed.
"""

from __future__ import annotations

from shimmfa.errors import CentralError

__all__ = [
    "ChainBreach",
    "Conflict",
    "Forbidden",
    "Invalid",
    "InvalidCredentials",
    "LockedOut",
    "MissingEnrollment",
    "NotFound",
    "Problem",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
]


class Problem(CentralError):  # noqa: N818 - a domain problem, mapped to HTTP
    """A request the service refuses; `code` says why, for machines."""

    code = "problem"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class InvalidCredentials(Problem):
    """A login failed (whatever failed: the reply is always the same)."""

    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("invalid credentials")


class Unauthenticated(Problem):
    """No credential, or one that is unknown, revoked or expired."""

    code = "unauthorized"


class Forbidden(Problem):
    """The credential is valid but may not do this."""

    code = "forbidden"


class NotFound(Problem):
    code = "not_found"


class Conflict(Problem):
    """The request contradicts what is stored (exists already, not newer)."""

    code = "conflict"


class Invalid(Problem):
    """The request is well formed but its content is refused."""

    code = "invalid"


class TooLarge(Problem):
    code = "too_large"


class MissingEnrollment(Problem):
    """An MFA chain needs factors the operator has not enrolled (seed: 400)."""

    code = "missing_enrollment"

    def __init__(self, factors: list[str]) -> None:
        super().__init__(f"Missing enrollment for required factors: {', '.join(factors)}")
        self.factors = factors


class ChainBreach(Conflict):
    """A chain step out of order, or after the attempt completed."""

    code = "chain_breached"


class LockedOut(Problem):
    """Too many failed steps: nothing is checked until the lockout ends."""

    code = "locked_out"

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed attempts: locked out for now")
        self.retry_after = max(1, int(retry_after + 0.999))


class Unavailable(Problem):
    """The service cannot do this now (e.g. its keys are missing)."""

    code = "unavailable"
