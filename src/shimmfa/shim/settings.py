"""The settings: every configuration key, its type, default and meaning.

Rules:
- One frozen pydantic model per section; unknown keys and wrong types are
  refused (strict), and every key of ours has a default except the seed's
  required ones. `config.load_config` turns a YAML file into `Settings`.
- The models are the one settings table: `reference_table()` renders them for
  the README and `shimmfa config reference`, and a test keeps the two in
  agreement.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from shimmfa.core.totp import InvalidSecretError, TechnicianRecord, decode_secret


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_identifier(value: str, what: str) -> str:
    if not value or len(value) > 128:
        raise ValueError(f"{what} must be 1 to 128 characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must not contain spaces or control characters")
    return value


class ShimSection(_Section):
    id: Annotated[str, Field(description="Name of this shim, used in logs and recordings.")]
    description: Annotated[
        str, Field(description="Free text: where the shim is, which device.")
    ] = ""
    hardware_id: Annotated[
        str | None, Field(description="Hardware ID in heartbeats (default: from machine-id).")
    ] = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_identifier(value, "shim id")


class SerialSection(_Section):
    technician_side_path: Annotated[
        str, Field(description="Serial port (or PTY link) the technician's laptop is on.")
    ]
    device_side_path: Annotated[
        str, Field(description="Serial port (or PTY link) of the medical device.")
    ]
    baudrate: Annotated[int, Field(gt=0, le=4_000_000, description="Baud rate of both ports.")] = (
        9600
    )
    bytesize: Annotated[Literal[5, 6, 7, 8], Field(description="Data bits.")] = 8
    parity: Annotated[Literal["N", "E", "O", "M", "S"], Field(description="Parity.")] = "N"
    stopbits: Annotated[Literal[1, 2], Field(description="Stop bits.")] = 1
    rtscts: Annotated[bool, Field(description="RTS/CTS hardware flow control.")] = False
    xonxoff: Annotated[bool, Field(description="XON/XOFF software flow control.")] = False


class TotpSection(_Section):
    period: Annotated[int, Field(ge=10, le=300, description="TOTP time step, seconds.")] = 30
    digits: Annotated[Literal[6, 8], Field(description="Code length.")] = 6
    window: Annotated[
        int, Field(ge=0, le=3, description="Time steps accepted either side of now (max 3).")
    ] = 1
    max_failures: Annotated[
        int, Field(ge=1, le=100, description="Failures within lockout_seconds that lock.")
    ] = 5
    lockout_seconds: Annotated[
        float, Field(ge=0, le=86400, description="Lockout duration and counting span, seconds.")
    ] = 300.0
    algorithm: Annotated[
        Literal["SHA1", "SHA256", "SHA512"], Field(description="Default HMAC algorithm.")
    ] = "SHA1"


class StorageSection(_Section):
    root: Annotated[str, Field(description="Directory for state, keys and recordings.")]
    budget_bytes: Annotated[
        int, Field(ge=1 << 20, description="Most bytes of recordings kept; then no new sessions.")
    ] = 4 << 30
    min_free_bytes: Annotated[
        int, Field(ge=0, description="Free disk space below which no session starts.")
    ] = 64 << 20


class RecordingSection(_Section):
    recipients: Annotated[
        list[str],
        Field(description="age recipients (age1...) of the recordings' data keys."),
    ] = []
    fsync_interval: Annotated[
        float, Field(gt=0, le=60, description="Seconds between fsyncs + signed checkpoints.")
    ] = 1.0
    max_bytes: Annotated[
        int, Field(ge=1 << 16, description="Largest session recording; then `size_limit`.")
    ] = 1 << 30

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        from pyrage import x25519

        for index, text in enumerate(value):
            try:
                x25519.Recipient.from_str(text)
            except Exception:
                raise ValueError(
                    f"entry {index} is not an age X25519 recipient (age1...)"
                ) from None
        return value


TamperEventName = Literal[
    "case_opened",
    "magnetic_anomaly",
    "unexpected_motion",
    "boot_integrity_violated",
    "cable_pulled",
]


class FileSensorEntry(_Section):
    type: Literal["file"]
    path: Annotated[str, Field(description="File (e.g. a sysfs GPIO value) to read.")]
    triggered: Annotated[str, Field(description="Content meaning tampering is seen.")] = "1"
    event: TamperEventName = "case_opened"


class GpioSensorEntry(_Section):
    type: Literal["gpio"]
    chip: Annotated[str, Field(description="GPIO chip, e.g. /dev/gpiochip0.")]
    line: Annotated[int, Field(ge=0, description="Line offset on the chip.")]
    active_value: Literal[0, 1] = 1
    event: TamperEventName = "case_opened"


class ModemSensorEntry(_Section):
    type: Literal["modem"]
    event: TamperEventName = "cable_pulled"


class BootIntegritySensorEntry(_Section):
    type: Literal["boot_integrity"]


SensorEntry = Annotated[
    FileSensorEntry | GpioSensorEntry | ModemSensorEntry | BootIntegritySensorEntry,
    Field(discriminator="type"),
]


class TamperSection(_Section):
    heartbeat_period: Annotated[
        float, Field(gt=0, le=3600, description="Seconds between signed heartbeats.")
    ] = 60.0
    sensors: Annotated[
        list[SensorEntry],
        Field(description="Tamper sensors: file, gpio, modem, boot_integrity (see README)."),
    ] = []
    sensor_poll_period: Annotated[
        float, Field(gt=0, le=1, description="Seconds between sensor polls.")
    ] = 0.02
    sensor_timeout: Annotated[
        float, Field(gt=0, le=60, description="A poll round longer than this is a sensor fault.")
    ] = 1.0


class SiemSection(_Section):
    transport: Annotated[
        Literal["noop", "file", "syslog", "https"],
        Field(description="Where events go: `noop`, `file` (JSON lines), `syslog`, `https`."),
    ] = "noop"
    endpoint: Annotated[
        str | None,
        Field(description="syslog: `tls://host:port` or `tcp://host:port`; https: the URL."),
    ] = None
    path: Annotated[str | None, Field(description="file: the JSON-lines file events go to.")] = None
    ca_file: Annotated[
        str | None, Field(description="CA certificates (PEM) the receiver must chain to.")
    ] = None
    client_cert: Annotated[
        str | None, Field(description="Client certificate (PEM) for mutual TLS.")
    ] = None
    client_key: Annotated[str | None, Field(description="Private key (PEM) of `client_cert`.")] = (
        None
    )
    format: Annotated[Literal["rfc5424", "cef"], Field(description="syslog message format.")] = (
        "rfc5424"
    )
    outbox_max: Annotated[
        int,
        Field(
            ge=100, le=10_000_000, description="Events the outbox holds before dropping heartbeats."
        ),
    ] = 100_000

    @model_validator(mode="after")
    def _consistent(self) -> SiemSection:
        if self.client_cert is not None and self.client_key is None:
            raise ValueError("siem.client_cert is set but siem.client_key is not; set both")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("siem.client_key is set but siem.client_cert is not; set both")
        if self.transport == "file" and not self.path:
            raise ValueError("siem.path is required when siem.transport is 'file'")
        if self.transport in ("syslog", "https"):
            if not self.endpoint:
                raise ValueError(
                    f"siem.endpoint is required when siem.transport is {self.transport!r}"
                )
            schemes = ("tls", "tcp") if self.transport == "syslog" else ("https",)
            try:
                url = urlsplit(self.endpoint)
                port = url.port
            except ValueError:
                raise ValueError("siem.endpoint is not a valid URL") from None
            if url.scheme not in schemes:
                wanted = " or ".join(f"{s}://" for s in schemes)
                raise ValueError(
                    f"siem.endpoint must start with {wanted} for transport {self.transport!r}"
                )
            if not url.hostname or (self.transport == "syslog" and port is None):
                raise ValueError("siem.endpoint needs a host and a port, e.g. tls://siem:6514")
            if url.username or url.password:
                raise ValueError("siem.endpoint must not carry a user name or password")
            if url.scheme == "tcp" and (self.ca_file or self.client_cert):
                raise ValueError(
                    "siem.ca_file and siem.client_cert need a tls:// endpoint, not tcp://"
                )
        return self


class CentralSection(_Section):
    url: Annotated[
        str | None,
        Field(description="The central service, `https://host:port` (none: not used)."),
    ] = None
    token_file: Annotated[
        str | None,
        Field(description="File (0600) holding this shim's central credential."),
    ] = None
    ca_file: Annotated[
        str | None, Field(description="CA certificates (PEM) central's certificate chains to.")
    ] = None

    @model_validator(mode="after")
    def _consistent(self) -> CentralSection:
        if self.url is None:
            if self.token_file or self.ca_file:
                raise ValueError("central.token_file and central.ca_file need central.url")
            return self
        try:
            url = urlsplit(self.url)
            url.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError("central.url is not a valid URL") from None
        if url.scheme != "https" or not url.hostname:
            raise ValueError("central.url must be https://host[:port]")
        if url.username or url.password or url.query or url.fragment:
            raise ValueError("central.url must not carry a user, password, query or fragment")
        if not self.token_file:
            raise ValueError("central.token_file is required with central.url")
        return self


class SessionSection(_Section):
    idle_timeout: Annotated[
        float,
        Field(gt=0, le=86400, description="Seconds without traffic either way that end a session."),
    ] = 900.0
    max_duration: Annotated[
        float, Field(gt=0, le=7 * 86400, description="Longest session, seconds (default 8 hours).")
    ] = 28800.0


class GateSection(_Section):
    echo: Annotated[bool, Field(description="Echo what the technician types at the prompt.")] = True
    max_line: Annotated[
        int, Field(ge=32, le=4096, description="Longest accepted login line, bytes.")
    ] = 256
    backoff_initial: Annotated[
        float, Field(ge=0, le=60, description="First per-port backoff after a failure, s (0: off).")
    ] = 1.0
    backoff_max: Annotated[float, Field(ge=0, le=600, description="Backoff cap, seconds.")] = 60.0


class TechnicianEntry(_Section):
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

    @field_validator("enrolment_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("technician_id")
    @classmethod
    def _tech_id(cls, value: str) -> str:
        return check_identifier(value, "technician ID")

    @field_validator("totp_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        try:
            decode_secret(value)
        except InvalidSecretError:
            raise ValueError("not valid base32 (letters A-Z and digits 2-7)") from None
        return value


class Settings(_Section):
    shim: ShimSection
    serial: SerialSection
    storage: StorageSection
    totp: TotpSection = TotpSection()
    tamper: TamperSection = TamperSection()
    siem: SiemSection = SiemSection()
    central: CentralSection = CentralSection()
    session: SessionSection = SessionSection()
    gate: GateSection = GateSection()
    recording: RecordingSection = RecordingSection()
    technicians: list[TechnicianEntry] = []

    @field_validator("technicians")
    @classmethod
    def _unique(cls, value: list[TechnicianEntry]) -> list[TechnicianEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.technician_id in seen:
                raise ValueError(f"duplicate technician ID {entry.technician_id!r}")
            seen.add(entry.technician_id)
        return value

    @property
    def storage_root(self) -> Path:
        return Path(self.storage.root)

    def technician_records(self) -> dict[str, TechnicianRecord]:
        """The technicians written in the config file, by ID."""
        return {
            entry.technician_id: TechnicianRecord(
                technician_id=entry.technician_id,
                totp_secret=entry.totp_secret,
                enrolment_date=entry.enrolment_date,
                notes=entry.notes,
                algorithm=entry.algorithm,
                digits=entry.digits,
                period=entry.period,
                roles=tuple(entry.roles),
            )
            for entry in self.technicians
        }
