"""The settings: every configuration key, its type, default and meaning.

Rules:
- One frozen pydantic model per section; unknown keys and wrong types are
  refused (strict), and every key of ours has a default except the seed's
  required ones. `config.load_config` turns a YAML file into `Settings`.
- The models are the one settings table: `config.reference_table()` renders
  them for the README and `shimmfa config reference`, and a test keeps the
  two in agreement.

The lowest layer of the shim: imports `shimmfa.core` only.
"""

from shimmfa.shim.settings.base import Section, check_identifier, check_technician_id
from shimmfa.shim.settings.reporting import CentralSection, SiemSection
from shimmfa.shim.settings.root import Settings
from shimmfa.shim.settings.sections import (
    BootIntegritySensorEntry,
    FileSensorEntry,
    GateSection,
    GpioSensorEntry,
    ModemSensorEntry,
    PolicySection,
    RecordingSection,
    SerialSection,
    SessionSection,
    ShimSection,
    StorageSection,
    TamperSection,
    TotpSection,
)
from shimmfa.shim.settings.technicians import FactorEntry, TechnicianEntry

__all__ = [
    "BootIntegritySensorEntry",
    "CentralSection",
    "FactorEntry",
    "FileSensorEntry",
    "GateSection",
    "GpioSensorEntry",
    "ModemSensorEntry",
    "PolicySection",
    "RecordingSection",
    "Section",
    "SerialSection",
    "SessionSection",
    "Settings",
    "ShimSection",
    "SiemSection",
    "StorageSection",
    "TamperSection",
    "TechnicianEntry",
    "TotpSection",
    "check_identifier",
    "check_technician_id",
]
