"""Technician management on the shim's state DB: enrol, list, show the
provisioning URI, remove, unlock. Used by `shimmfa technician` and the demo.

Rules: new secrets are 160 bits from `os.urandom`; an ID already in the config
file cannot be enrolled in the DB too; removal and unlock are audited; unlock
clears failures and lockout but never the replay counter.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from shimmfa.core.gate import BREAKGLASS_ID
from shimmfa.core.totp import (
    AuthState,
    TechnicianRecord,
    TotpGate,
    generate_totp_secret,
    provisioning_uri,
)
from shimmfa.errors import ConfigError, TechnicianError
from shimmfa.shim.settings import Settings, check_technician_id
from shimmfa.shim.state.breakglass import breakglass_record
from shimmfa.shim.state.factors import add_factor
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.synced import SyncedTechnicians, SyncedView


class TechnicianDirectory(Mapping[str, TechnicianRecord]):
    """Technicians from the config file, the state DB and (given `synced`)
    central's bundle, looked up live so that `shimmfa technician add` and a
    sync take effect without a restart. The first source that has an ID
    wins: the config file, then the state DB's enrolments, then central."""

    def __init__(
        self,
        from_config: Mapping[str, TechnicianRecord],
        store: StateStore,
        synced: SyncedView | None = None,
    ) -> None:
        self._config = dict(from_config)
        self._store = store
        self._synced = synced

    def __getitem__(self, technician_id: str) -> TechnicianRecord:
        if technician_id == BREAKGLASS_ID:
            found = breakglass_record(self._store)
            if found is None:
                raise KeyError(technician_id)
            return found
        record = self._config.get(technician_id) or self._store.technician(technician_id)
        if record is None and self._synced is not None:
            record = self._synced.get(technician_id)
        if record is None:
            raise KeyError(technician_id)
        return record

    def __iter__(self) -> Iterator[str]:
        yield from self._config
        local = self._store.technician_ids()
        yield from (t for t in local if t not in self._config)
        if self._synced is not None:
            shadowed = set(self._config) | set(local)
            yield from (t for t in self._synced.ids() if t not in shadowed)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def conflicts(self) -> list[str]:
        """IDs defined both in the config file and the DB."""
        return sorted(set(self._config) & set(self._store.technician_ids()))


def build_gate(
    settings: Settings,
    store: StateStore,
    *,
    clock: Callable[[], float] = time.time,
    synced: SyncedTechnicians | None = None,
) -> TotpGate:
    """The TOTP gate over the config's and the state DB's technicians, and
    central's (`synced`, valid for `central.bundle_max_age`)."""
    view = None
    if synced is not None:
        view = SyncedView(synced, settings.central.bundle_max_age, clock)
    directory = TechnicianDirectory(settings.technician_records(), store, view)
    clash = directory.conflicts()
    if clash:
        raise ConfigError(
            f"technicians {', '.join(map(repr, clash))} are both in the config file and "
            "the state DB; remove one of the two entries"
        )
    totp = settings.totp
    return TotpGate(
        directory,
        time_source=clock,
        period=totp.period,
        digits=totp.digits,
        window=totp.window,
        max_failures=totp.max_failures,
        lockout_seconds=totp.lockout_seconds,
        algorithm=totp.algorithm,
        store=store,
    )


@dataclass(frozen=True, slots=True)
class TechnicianRow:
    technician_id: str
    source: str
    algorithm: str
    digits: int
    period: int
    locked_until: float
    last_login_step: int
    enrolment_date: str


def _directory(settings: Settings, store: StateStore) -> TechnicianDirectory:
    view = SyncedView(SyncedTechnicians(store), settings.central.bundle_max_age)
    return TechnicianDirectory(settings.technician_records(), store, view)


def enrol(
    settings: Settings,
    store: StateStore,
    technician_id: str,
    *,
    algorithm: str | None = None,
    digits: int | None = None,
    period: int | None = None,
    notes: str = "",
    roles: tuple[str, ...] = (),
) -> TechnicianRecord:
    try:
        check_technician_id(technician_id)
    except ValueError as exc:
        raise TechnicianError(str(exc)) from None
    if technician_id in settings.technician_records():
        raise TechnicianError(
            f"technician {technician_id!r} is defined in the config file; remove it there first"
        )
    record = TechnicianRecord(
        technician_id=technician_id,
        totp_secret=generate_totp_secret(os.urandom),
        enrolment_date=dt.date.today().isoformat(),
        notes=notes,
        algorithm=algorithm,
        digits=digits,
        period=period,
        roles=roles,
    )
    store.add_technician(record, time.time())
    return record


def enrol_factor(settings: Settings, store: StateStore, technician_id: str, label: str) -> str:
    """A further factor with a new 160-bit secret for a technician of the
    state DB; its provisioning URI (issuer `ShimMFA`, the label in the
    account name so an app tells the two apart)."""

    if technician_id in settings.technician_records():
        raise TechnicianError(
            f"technician {technician_id!r} is defined in the config file; give it `factors:` there"
        )
    record = store.technician(technician_id)
    if record is None:
        raise TechnicianError(f"no technician {technician_id!r} in the state DB")
    secret = generate_totp_secret(os.urandom)
    add_factor(store, technician_id, label, secret, time.time())
    return uri_for(
        settings, replace(record, technician_id=f"{technician_id} ({label})", totp_secret=secret)
    )


def find(settings: Settings, store: StateStore, technician_id: str) -> TechnicianRecord:
    record = _directory(settings, store).get(technician_id)
    if record is None:
        raise TechnicianError(f"no technician {technician_id!r} is enrolled on this shim")
    return record


def uri_for(settings: Settings, record: TechnicianRecord) -> str:
    totp = settings.totp
    return provisioning_uri(
        record.technician_id,
        record.totp_secret,
        "ShimMFA",
        digits=record.digits or totp.digits,
        period=record.period or totp.period,
        algorithm=record.algorithm or totp.algorithm,
    )


def rows(settings: Settings, store: StateStore) -> list[TechnicianRow]:
    from_config = settings.technician_records()
    local = set(store.technician_ids())
    result = []
    for tid, record in _directory(settings, store).items():
        state = store.get(tid)
        source = "config file" if tid in from_config else "state DB" if tid in local else "central"
        result.append(
            TechnicianRow(
                tid,
                source,
                record.algorithm or settings.totp.algorithm,
                record.digits or settings.totp.digits,
                record.period or settings.totp.period,
                state.locked_until,
                state.last_counter,
                record.enrolment_date,
            )
        )
    return result


def remove(store: StateStore, settings: Settings, technician_id: str) -> None:
    if technician_id in settings.technician_records():
        raise TechnicianError(
            f"technician {technician_id!r} is in the config file; remove the entry there"
        )
    if not store.remove_technician(technician_id, time.time()):
        raise TechnicianError(f"no technician {technician_id!r} in the state DB")


def unlock(store: StateStore, settings: Settings, technician_id: str, operator: str) -> bool:
    """Clear the lockout of `technician_id`; True if it was locked."""
    find(settings, store, technician_id)
    now = time.time()

    def change(state: AuthState) -> tuple[AuthState, bool]:
        cleared = replace(state, failures=0, failures_since=0.0, locked_until=0.0)
        return cleared, state.locked_until > now

    was_locked = store.update(technician_id, change)
    store.audit(now, "technician_unlocked", technician_id, {"operator": operator})
    return was_locked
