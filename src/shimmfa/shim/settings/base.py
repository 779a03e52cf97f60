"""What every settings section shares: strict, frozen models that refuse
unknown keys, and the identifier rule (IDs in logs and on the wire)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section", "check_identifier"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_identifier(value: str, what: str) -> str:
    if not value or len(value) > 128:
        raise ValueError(f"{what} must be 1 to 128 characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must not contain spaces or control characters")
    return value
