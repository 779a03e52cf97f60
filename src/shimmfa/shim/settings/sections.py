"""The shim's own sections: the shim, its serial ports, TOTP defaults,
storage, recording, tamper sensors, sessions and the gate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from shimmfa.shim.settings.base import Section, check_identifier


class ShimSection(Section):
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


class SerialSection(Section):
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


class TotpSection(Section):
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


class StorageSection(Section):
    root: Annotated[str, Field(description="Directory for state, keys and recordings.")]
    budget_bytes: Annotated[
        int, Field(ge=1 << 20, description="Most bytes of recordings kept; then no new sessions.")
    ] = 4 << 30
    min_free_bytes: Annotated[
        int, Field(ge=0, description="Free disk space below which no session starts.")
    ] = 64 << 20


class RecordingSection(Section):
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
    delete_after_upload: Annotated[
        bool,
        Field(description="Delete a recording once central confirmed it (needs central.url)."),
    ] = False

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


class FileSensorEntry(Section):
    type: Literal["file"]
    path: Annotated[str, Field(description="File (e.g. a sysfs GPIO value) to read.")]
    triggered: Annotated[str, Field(description="Content meaning tampering is seen.")] = "1"
    event: TamperEventName = "case_opened"


class GpioSensorEntry(Section):
    type: Literal["gpio"]
    chip: Annotated[str, Field(description="GPIO chip, e.g. /dev/gpiochip0.")]
    line: Annotated[int, Field(ge=0, description="Line offset on the chip.")]
    active_value: Literal[0, 1] = 1
    event: TamperEventName = "case_opened"


class ModemSensorEntry(Section):
    type: Literal["modem"]
    event: TamperEventName = "cable_pulled"


class BootIntegritySensorEntry(Section):
    type: Literal["boot_integrity"]


SensorEntry = Annotated[
    FileSensorEntry | GpioSensorEntry | ModemSensorEntry | BootIntegritySensorEntry,
    Field(discriminator="type"),
]


class TamperSection(Section):
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


class SessionSection(Section):
    idle_timeout: Annotated[
        float,
        Field(gt=0, le=86400, description="Seconds without traffic either way that end a session."),
    ] = 900.0
    max_duration: Annotated[
        float, Field(gt=0, le=7 * 86400, description="Longest session, seconds (default 8 hours).")
    ] = 28800.0


class PolicySection(Section):
    """An MFA chain at the port (core.chain): the login line's code is the
    technician's first factor; the rest come from their `factors`."""

    mode: Annotated[
        Literal["fixed", "random"],
        Field(description="`fixed`: factors in their order; `random`: a fresh order each time."),
    ] = "fixed"
    required_steps: Annotated[
        int, Field(ge=1, le=8, description="Codes needed in all, the login line's included.")
    ] = 2
    window: Annotated[
        int, Field(ge=0, le=3, description="Time steps accepted either side of now, per factor.")
    ] = 1
    attempt_ttl: Annotated[
        float, Field(ge=30, le=3600, description="Seconds to complete the chain once started.")
    ] = 300.0
    max_failures: Annotated[
        int,
        Field(ge=1, le=100, description="Failed factor steps within lockout_seconds that lock."),
    ] = 5
    lockout_seconds: Annotated[
        float, Field(ge=0, le=86400, description="Chain lockout duration and counting span, s.")
    ] = 300.0


class GateSection(Section):
    echo: Annotated[bool, Field(description="Echo what the technician types at the prompt.")] = True
    max_line: Annotated[
        int, Field(ge=32, le=4096, description="Longest accepted login line, bytes.")
    ] = 256
    backoff_initial: Annotated[
        float, Field(ge=0, le=60, description="First per-port backoff after a failure, s (0: off).")
    ] = 1.0
    backoff_max: Annotated[float, Field(ge=0, le=600, description="Backoff cap, seconds.")] = 60.0
    policy: Annotated[
        PolicySection | None,
        Field(description="An MFA chain after the login line (none: a technician's own factors)."),
    ] = None
