"""What every settings section shares: strict, frozen models that refuse
unknown keys, and the identifier rule (IDs in logs and on the wire)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shimmfa.core.gate import BREAKGLASS_ID

__all__ = ["Section", "check_identifier", "check_technician_id"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_identifier(value: str, what: str) -> str:
    if not value or len(value) > 128:
        raise ValueError(f"{what} must be 1 to 128 characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must not contain spaces or control characters")
    return value


def check_technician_id(value: str) -> str:
    """A technician ID: an identifier, and not the break-glass one."""
    check_identifier(value, "technician ID")
    if value == BREAKGLASS_ID:
        raise ValueError(f"{BREAKGLASS_ID!r} is reserved for break-glass logins")
    return value
