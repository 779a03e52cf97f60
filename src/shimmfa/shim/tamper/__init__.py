"""Tamper: the sensors, the detector that latches the shim shut and sends
heartbeats, and boot integrity (the installed software and config against a
signed manifest).

May import `state/`, `settings` and `config`; never `link/`, `recorder/` or
`reporting/` (the detector reports through callbacks the daemon wires).
The seed's names (`TamperDetector`, `TamperEvent`, `TamperSensor`,
`HeartbeatRecord`, ...) are importable from here, as in the seed.
"""

from shimmfa.shim.state.store import Latch
from shimmfa.shim.tamper.detector import HeartbeatRecord, LatchStore, TamperDetector
from shimmfa.shim.tamper.sensors import (
    FileSensor,
    GpioSensor,
    ModemSensor,
    NullSensor,
    TamperEvent,
    TamperSensor,
)

__all__ = [
    "FileSensor",
    "GpioSensor",
    "HeartbeatRecord",
    "Latch",
    "LatchStore",
    "ModemSensor",
    "NullSensor",
    "TamperDetector",
    "TamperEvent",
    "TamperSensor",
]
