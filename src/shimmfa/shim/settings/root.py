"""`Settings`: the whole configuration file, section by section."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator, model_validator

from shimmfa.core.totp import TechnicianRecord
from shimmfa.shim.settings.base import Section
from shimmfa.shim.settings.reporting import CentralSection, SiemSection
from shimmfa.shim.settings.sections import (
    GateSection,
    RecordingSection,
    SerialSection,
    SessionSection,
    ShimSection,
    StorageSection,
    TamperSection,
    TotpSection,
)
from shimmfa.shim.settings.technicians import TechnicianEntry

__all__ = ["Settings"]


class Settings(Section):
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

    @model_validator(mode="after")
    def _uploads(self) -> Settings:
        if self.recording.delete_after_upload and not (
            self.central.url and self.central.upload_recordings
        ):
            raise ValueError(
                "recording.delete_after_upload needs central.url with central.upload_recordings"
            )
        return self

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
