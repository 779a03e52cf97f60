"""Technicians written in the config file (the seed's `technicians:`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from shimmfa.core.totp import InvalidSecretError, decode_secret
from shimmfa.shim.settings.base import Section, check_technician_id

__all__ = ["FactorEntry", "TechnicianEntry"]


def _base32(value: str) -> str:
    try:
        decode_secret(value)
    except InvalidSecretError:
        raise ValueError("not valid base32 (letters A-Z and digits 2-7)") from None
    return value


class FactorEntry(Section):
    label: Annotated[
        str,
        Field(min_length=1, max_length=64, description="What the gate asks for, e.g. `Backup`."),
    ]
    totp_secret: Annotated[str, Field(description="Base32 TOTP secret of this factor.")]
    algorithm: Annotated[
        Literal["SHA1", "SHA256", "SHA512"] | None, Field(description="Overrides totp.algorithm.")
    ] = None
    digits: Annotated[Literal[6, 8] | None, Field(description="Overrides totp.digits.")] = None
    period: Annotated[int | None, Field(ge=10, le=300, description="Overrides totp.period.")] = None

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not value.isprintable() or not value.strip() or value == "RESET":
            raise ValueError("a factor label is printable text, not RESET")
        return value

    @field_validator("totp_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return _base32(value)


class TechnicianEntry(Section):
    technician_id: Annotated[str, Field(description="Login name typed at the gate.")]
    totp_secret: Annotated[str, Field(description="Base32 TOTP secret (prefer the state DB).")]
    enrolment_date: Annotated[str, Field(description="ISO date of enrolment.")] = ""
    notes: Annotated[str, Field(description="Free text.")] = ""
    algorithm: Annotated[
        Literal["SHA1", "SHA256", "SHA512"] | None, Field(description="Overrides totp.algorithm.")
    ] = None
    digits: Annotated[Literal[6, 8] | None, Field(description="Overrides totp.digits.")] = None
    period: Annotated[int | None, Field(ge=10, le=300, description="Overrides totp.period.")] = None
    roles: Annotated[
        list[Literal["admin"]], Field(description="`admin` may reset the tamper latch.")
    ] = []
    factors: Annotated[
        list[FactorEntry],
        Field(description="Further factors for `gate.policy` (the first is `totp_secret`)."),
    ] = []

    @field_validator("enrolment_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("technician_id")
    @classmethod
    def _tech_id(cls, value: str) -> str:
        return check_technician_id(value)

    @field_validator("totp_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return _base32(value)

    @field_validator("factors")
    @classmethod
    def _factors(cls, value: list[FactorEntry]) -> list[FactorEntry]:
        labels = [factor.label for factor in value]
        if len(set(labels)) != len(labels):
            raise ValueError("factor labels must be unique for a technician")
        secrets = [factor.totp_secret.upper().replace(" ", "").rstrip("=") for factor in value]
        if len(set(secrets)) != len(secrets):
            raise ValueError("two factors share a secret: that is one factor asked twice")
        return value
