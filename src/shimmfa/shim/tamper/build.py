"""The tamper sensors the configuration names (`tamper.sensors`)."""

from __future__ import annotations

import logging
from pathlib import Path

from shimmfa.shim.settings import (
    BootIntegritySensorEntry,
    FileSensorEntry,
    GpioSensorEntry,
    ModemSensorEntry,
    Settings,
)
from shimmfa.shim.state.keys import ShimKeys
from shimmfa.shim.tamper.integrity import BootIntegritySensor
from shimmfa.shim.tamper.sensors import (
    BrokenSensor,
    FileSensor,
    GpioSensor,
    ModemSensor,
    TamperEvent,
    TamperSensor,
)

__all__ = ["build_sensors"]

log = logging.getLogger("shimmfa.tamper")


def build_sensors(
    settings: Settings, keys: ShimKeys, config_path: Path
) -> tuple[list[TamperSensor], ModemSensor | None]:
    sensors: list[TamperSensor] = []
    modem: ModemSensor | None = None
    for entry in settings.tamper.sensors:
        if isinstance(entry, FileSensorEntry):
            sensors.append(FileSensor(entry.path, entry.triggered, TamperEvent(entry.event)))
        elif isinstance(entry, GpioSensorEntry):
            try:
                sensors.append(
                    GpioSensor(entry.chip, entry.line, entry.active_value, TamperEvent(entry.event))
                )
            except Exception as exc:
                name = f"gpio:{entry.chip}:{entry.line}"
                log.critical("tamper sensor %s cannot be set up: %s", name, exc)
                sensors.append(BrokenSensor(name, f"{type(exc).__name__}: {exc}"))
        elif isinstance(entry, ModemSensorEntry):
            modem = ModemSensor(TamperEvent(entry.event))
            sensors.append(modem)
        elif isinstance(entry, BootIntegritySensorEntry):
            sensors.append(
                BootIntegritySensor(settings.storage_root, keys.public_key_raw, config_path)
            )
    return sensors, modem
