"""Central's technicians in the state DB (`shimmfa.shim.state.synced`) and
the gate's directory over them (`technicians.build_gate`), on a real
SQLite file: a bundle replaces the whole set at once (a technician left
out stops working at the next login), versions only go up across
restarts, secrets are sealed on disk, the bundle expires after
`central.bundle_max_age`, and the config file's and the state DB's own
technicians win over a synced one with the same ID."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from shimmfa.core.bundle import BundleTechnician, TechnicianBundle
from shimmfa.core.totp import AuthResult, TechnicianRecord
from shimmfa.errors import BundleError
from shimmfa.shim.config import parse_settings
from shimmfa.shim.settings import Settings
from shimmfa.shim.state import technicians
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.synced import SyncedTechnicians
from shimmfa.shim.state.technicians import build_gate

ADA = base64.b32encode(b"ada-secret-160-bits!").decode()
BEN = base64.b32encode(b"ben-secret-160-bits!").decode()
CONFIG_SECRET = base64.b32encode(b"config-secret-160-b!").decode()
MAX_AGE = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def person(tid: str, secret: str) -> BundleTechnician:
    return BundleTechnician(tid, secret, "SHA1", 6, 30, (), f"Name of {tid}", "Vendor")


def bundle(version: int, *people: BundleTechnician) -> TechnicianBundle:
    return TechnicianBundle("shim-test", version, 1_700_000_000.0, people)


def settings_with(root: Path, *config_ids: str) -> Settings:
    return parse_settings(
        {
            "shim": {"id": "shim-test"},
            "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
            "storage": {"root": str(root)},
            "central": {
                "url": "https://central.example:8443",
                "token_file": "/nonexistent",
                "bundle_max_age": MAX_AGE,
            },
            "technicians": [{"technician_id": t, "totp_secret": CONFIG_SECRET} for t in config_ids],
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path)
    yield opened
    opened.close()


def login(gate_clock: Clock, store: StateStore, settings: Settings, tid: str, secret: str) -> str:
    gate = build_gate(settings, store, clock=gate_clock, synced=SyncedTechnicians(store))
    code = pyotp.TOTP(secret).at(gate_clock.now)
    return gate.authenticate(tid, code).result.value


def test_a_bundle_replaces_the_set_and_a_technician_left_out_stops_at_once(
    tmp_path: Path, store: StateStore
) -> None:
    synced, clock, settings = SyncedTechnicians(store), Clock(), settings_with(tmp_path)
    change = synced.apply(bundle(10, person("ada", ADA), person("ben", BEN)), clock.now)
    assert (change.added, change.removed, change.count) == (("ada", "ben"), (), 2)
    assert login(clock, store, settings, "ada", ADA) == AuthResult.OK
    change = synced.apply(bundle(11, person("ben", BEN)), clock.now)
    assert (change.added, change.removed) == ((), ("ada",))
    clock.now += 30  # a fresh code: the old one would be a replay anyway
    assert login(clock, store, settings, "ada", ADA) == AuthResult.BAD_USER
    assert login(clock, store, settings, "ben", BEN) == AuthResult.OK
    assert synced.ids() == ["ben"]
    assert [e.action for e in store.audit_log() if e.action == "bundle_applied"] == [
        "bundle_applied",
        "bundle_applied",
    ]


def test_a_changed_secret_is_a_change_and_the_same_set_is_none(store: StateStore) -> None:
    synced = SyncedTechnicians(store)
    synced.apply(bundle(1, person("ada", ADA)), time.time())
    assert not synced.apply(bundle(2, person("ada", ADA)), time.time()).any
    assert synced.apply(bundle(3, person("ada", BEN)), time.time()).changed == ("ada",)
    record = synced.record("ada")
    assert record is not None and record.totp_secret == BEN


def test_versions_only_go_up_also_after_a_restart(tmp_path: Path) -> None:
    first = StateStore(tmp_path)
    SyncedTechnicians(first).apply(bundle(20, person("ada", ADA)), time.time())
    first.close()
    again = StateStore(tmp_path)
    try:
        synced = SyncedTechnicians(again)
        assert synced.version() == 20
        for older in (20, 19):
            with pytest.raises(BundleError) as caught:
                synced.apply(bundle(older), time.time())
            assert caught.value.reason == "not_newer"
        assert synced.ids() == ["ada"]  # nothing changed
        assert synced.version() == 20
    finally:
        again.close()


def test_synced_secrets_are_sealed_on_disk(tmp_path: Path, store: StateStore) -> None:
    SyncedTechnicians(store).apply(bundle(1, person("ada", ADA)), time.time())
    on_disk = b"".join(
        p.read_bytes() for p in (tmp_path / "state").iterdir() if p.name.startswith("shim.db")
    )
    assert b"ada" in on_disk
    assert ADA.encode() not in on_disk
    # bound to its row: moved to the shim's own technicians, it does not open
    row = store._db.execute("SELECT sealed_secret FROM synced_technicians").fetchone()
    store._db.execute(
        "INSERT INTO technicians VALUES ('ada', ?, NULL, NULL, NULL, '', '', '[]', 0)", (row[0],)
    )
    with pytest.raises(Exception, match="does not open"):
        store.technician("ada")


def test_the_bundle_expires_after_max_age_but_config_technicians_go_on(
    tmp_path: Path, store: StateStore
) -> None:
    synced, clock = SyncedTechnicians(store), Clock()
    settings = settings_with(tmp_path, "carol")
    synced.apply(bundle(1, person("ada", ADA)), clock.now)
    clock.now += MAX_AGE - 31
    assert login(clock, store, settings, "ada", ADA) == AuthResult.OK
    clock.now += 62  # past the bundle's max age
    assert synced.expired(clock.now, MAX_AGE)
    assert login(clock, store, settings, "ada", ADA) == AuthResult.BAD_USER
    assert login(clock, store, settings, "carol", CONFIG_SECRET) == AuthResult.OK
    synced.apply(bundle(2, person("ada", ADA)), clock.now)  # a sync: valid again
    clock.now += 30
    assert login(clock, store, settings, "ada", ADA) == AuthResult.OK


def test_the_config_file_and_the_state_db_win_over_central(
    tmp_path: Path, store: StateStore
) -> None:
    clock = Clock()
    settings = settings_with(tmp_path, "carol")
    store.add_technician(TechnicianRecord("dora", ADA), clock.now)
    SyncedTechnicians(store).apply(
        bundle(1, person("carol", BEN), person("dora", BEN), person("ed", BEN)), clock.now
    )
    assert login(clock, store, settings, "carol", BEN) == AuthResult.BAD_CODE
    assert login(clock, store, settings, "dora", BEN) == AuthResult.BAD_CODE
    clock.now += 30
    assert login(clock, store, settings, "carol", CONFIG_SECRET) == AuthResult.OK
    assert login(clock, store, settings, "dora", ADA) == AuthResult.OK
    assert login(clock, store, settings, "ed", BEN) == AuthResult.OK
    listed = {row.technician_id: row.source for row in technicians.rows(settings, store)}
    assert listed == {"carol": "config file", "dora": "state DB", "ed": "central"}


def test_sync_attempts_are_kept(store: StateStore) -> None:
    synced = SyncedTechnicians(store)
    assert synced.last_attempt("bundle") is None
    synced.note_attempt("bundle", 5.0, False, "central unreachable")
    synced.note_attempt("bundle", 6.0, True, "version 3")
    attempt = synced.last_attempt("bundle")
    assert attempt is not None and (attempt.at, attempt.ok, attempt.detail) == (
        6.0,
        True,
        "version 3",
    )
