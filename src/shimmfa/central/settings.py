"""The central service's settings: one typed table (name, default, help),
read from `SHIMMFA_CENTRAL_*` environment variables; command-line flags win
(the CLI passes them as keyword arguments, which pydantic-settings ranks
above the environment).

Rules:
- Built in `main()` / `create_app(settings)`, never at import time.
- Settings are frozen; nothing secret lives here (tokens and keys are in the
  database or in files named here).
- `sink_settings()` is the `transport.build.SinkSettings` view of the
  `siem_*` settings, so alarms go out through the shim's own senders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shimmfa.errors import ConfigError

__all__ = [
    "DEFAULT_DATABASE_URL",
    "FACTOR_ID",
    "CentralSettings",
    "SiemSinkSettings",
    "load_settings",
]

DEFAULT_DATABASE_URL = "sqlite:///./shimmfa-central.db"
SIEM_TRANSPORTS = ("noop", "file", "https", "syslog")
FACTOR_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class CentralSettings(BaseSettings):
    """Every setting of `shimmfa central`, with its environment variable
    `SHIMMFA_CENTRAL_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="SHIMMFA_CENTRAL_", frozen=True, extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: a SQLite file, or postgresql+psycopg://user@host/db.",
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(default=8443, ge=1, le=65535, description="TCP port `serve` listens on.")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes.")
    tls_cert: Path | None = Field(default=None, description="PEM certificate chain for HTTPS.")
    tls_key: Path | None = Field(default=None, description="PEM private key of `tls_cert`.")
    pool_size: int = Field(default=10, ge=1, le=200, description="Database connections per worker.")
    monitor_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between two evaluations of the fleet monitor.",
    )
    lease_ttl: float = Field(
        default=3.0,
        gt=0,
        le=300,
        description="Seconds a monitor lease lasts unrenewed: how soon another worker or "
        "instance takes over from one that died.",
    )
    heartbeat_retention_days: float = Field(
        default=7.0, gt=0, description="Days of heartbeat history kept; older rows are pruned."
    )
    prune_batch: int = Field(
        default=5000, ge=1, description="Heartbeat rows pruned per monitor pass."
    )
    session_ttl: float = Field(
        default=8 * 3600.0, gt=0, description="Seconds an operator's web session lasts at most."
    )
    session_idle: float = Field(
        default=1800.0,
        gt=0,
        description="Seconds of inactivity that end an operator's web session.",
    )
    totp_window: int = Field(default=1, ge=0, le=3, description="TOTP steps accepted either side.")
    max_failures: int = Field(default=5, ge=1, description="Login failures that lock an operator.")
    lockout_seconds: float = Field(default=300.0, ge=0, description="How long a lockout lasts.")
    admin_factors: str = Field(
        default="second",
        description="Further TOTP factors (comma-separated IDs) an admin gives after "
        "password and code, each enrolled with /api/v1/chain; empty: none.",
    )
    operator_factors: str = Field(
        default="", description="Further TOTP factors the other roles give; empty: none."
    )
    chain_mode: str = Field(
        default="fixed", description="Order of the further factors: fixed, or random per attempt."
    )
    chain_attempt_ttl: float = Field(
        default=300.0, gt=0, le=3600, description="Seconds a login's or step-up's chain lasts."
    )
    siem_transport: str = Field(
        default="noop", description="Where alarms are forwarded: noop, file, https or syslog."
    )
    siem_endpoint: str | None = Field(
        default=None, description="https://... or tcp:// / tls://host:port of the hospital SIEM."
    )
    siem_path: str | None = Field(
        default=None, description="JSON-lines file for the `file` transport."
    )
    siem_ca_file: str | None = Field(default=None, description="CA certificates of the SIEM (PEM).")
    siem_client_cert: str | None = Field(
        default=None, description="Client certificate for mutual TLS."
    )
    siem_client_key: str | None = Field(default=None, description="Key of `siem_client_cert`.")
    siem_format: str = Field(default="rfc5424", description="syslog rendering: rfc5424 or cef.")
    keys_dir: Path = Field(
        default=Path("central-keys"),
        description="Central's keys (0700): signing.pem, recording.agekey, secrets.key; "
        "made by `central init` or `central keys init`.",
    )
    recordings_dir: Path = Field(
        default=Path("central-recordings"),
        description="Where uploaded recordings are kept (0700).",
    )
    recording_max_bytes: int = Field(
        default=1 << 30, ge=1, description="The largest recording a shim may upload."
    )

    @field_validator("siem_transport")
    @classmethod
    def _known_transport(cls, value: str) -> str:
        if value not in SIEM_TRANSPORTS:
            raise ValueError(f"choose one of {', '.join(SIEM_TRANSPORTS)}")
        return value

    @field_validator("admin_factors", "operator_factors")
    @classmethod
    def _factor_ids(cls, value: str) -> str:
        ids = [item.strip() for item in value.split(",") if item.strip()]
        for factor_id in ids:
            if not FACTOR_ID.fullmatch(factor_id):
                raise ValueError(
                    f"{factor_id!r}: a factor ID is 1-32 of a-z, 0-9, '-' and '_', "
                    "starting with a letter or digit"
                )
        if len(set(ids)) != len(ids):
            raise ValueError("factor ids must be unique")
        return ",".join(ids)

    @field_validator("chain_mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in ("fixed", "random"):
            raise ValueError("choose fixed or random")
        return value

    def factors_for(self, role: str) -> tuple[str, ...]:
        """The further factor IDs an operator of `role` gives at login."""
        listed = self.admin_factors if role == "admin" else self.operator_factors
        return tuple(item for item in listed.split(",") if item)

    @field_validator("siem_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in ("rfc5424", "cef"):
            raise ValueError("choose rfc5424 or cef")
        return value

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def heartbeat_retention(self) -> float:
        return self.heartbeat_retention_days * 86400.0

    def sink_settings(self) -> SiemSinkSettings:
        return SiemSinkSettings(
            transport=self.siem_transport,
            endpoint=self.siem_endpoint,
            path=self.siem_path,
            ca_file=self.siem_ca_file,
            client_cert=self.siem_client_cert,
            client_key=self.siem_client_key,
            format=self.siem_format,
        )


@dataclass(frozen=True, slots=True)
class SiemSinkSettings:
    """The `siem_*` settings as `transport.build.build_sink` reads them."""

    transport: str
    endpoint: str | None
    path: str | None
    ca_file: str | None
    client_cert: str | None
    client_key: str | None
    format: str


def load_settings(**flags: Any) -> CentralSettings:
    """The settings from the environment and `flags`; a ConfigError (exit 2)
    naming the environment variable or flag for a value that does not fit."""
    try:
        return CentralSettings(**flags)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(map(str, first["loc"]))
        where = f"SHIMMFA_CENTRAL_{name.upper()} / --{name.replace('_', '-')}"
        raise ConfigError(f"{where}: {first['msg']}") from None
