"""Durable state (`shimmfa.shim.state.store`) and technician management
(`shimmfa.shim.state.technicians`) on a real SQLite file under tmp_path."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from shimmfa.core.totp import AuthResult, AuthState, TechnicianRecord, TotpGate
from shimmfa.errors import StateError, TechnicianError
from shimmfa.shim.config import parse_settings
from shimmfa.shim.settings import Settings
from shimmfa.shim.state import technicians
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import TechnicianDirectory

SECRET = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - test secret
CONFIG_SECRET = "MJXWELLTMVRXEZLUFVXWMLJSGAWWE6LU"  # noqa: S105 - test secret
ALICE = "alice@example.org"
CAROL = "carol@example.org"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path)
    yield opened
    opened.close()


def settings_with(tmp_path: Path, *config_technicians: str) -> Settings:
    return parse_settings(
        {
            "shim": {"id": "shim-test"},
            "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
            "storage": {"root": str(tmp_path)},
            "technicians": [
                {"technician_id": tid, "totp_secret": CONFIG_SECRET} for tid in config_technicians
            ],
        }
    )


def set_counter(value: int) -> Any:
    def change(state: AuthState) -> tuple[AuthState, str]:
        return dataclasses.replace(state, last_counter=value, attempts=state.attempts + 1), "done"

    return change


# -- the SQLite file ---------------------------------------------------------------------


def test_db_is_in_wal_mode_with_synchronous_full(store: StateStore) -> None:
    assert store.path == store.root / "state" / "shim.db"
    # synchronous is a per-connection setting: ask the store's own connection.
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_update_persists_across_a_new_store(tmp_path: Path) -> None:
    first = StateStore(tmp_path)
    assert first.update(ALICE, set_counter(42)) == "done"
    first.close()
    second = StateStore(tmp_path)
    try:
        assert second.get(ALICE) == AuthState(last_counter=42, attempts=1)
        assert second.get("never-seen") == AuthState()
    finally:
        second.close()


def test_failed_update_changes_nothing(store: StateStore) -> None:
    store.update(ALICE, set_counter(7))

    def explode(state: AuthState) -> tuple[AuthState, None]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.update(ALICE, explode)
    assert store.get(ALICE).last_counter == 7
    assert store.update(ALICE, set_counter(8)) == "done"  # the store still works


def test_concurrent_updates_of_one_key_are_not_lost(store: StateStore) -> None:
    def bump(state: AuthState) -> tuple[AuthState, None]:
        return dataclasses.replace(state, attempts=state.attempts + 1), None

    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            store.update(ALICE, bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get(ALICE).attempts == 40


# -- sealed secrets --------------------------------------------------------------------------


def test_technician_secrets_are_sealed_on_disk(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.add_technician(TechnicianRecord(ALICE, SECRET, notes="n"), time.time())
    on_disk = b"".join(
        p.read_bytes() for p in (tmp_path / "state").iterdir() if p.name.startswith("shim.db")
    )
    assert ALICE.encode() in on_disk  # the row is there...
    assert SECRET.encode() not in on_disk  # ...its secret is not
    assert SECRET.lower().encode() not in on_disk
    store.close()
    reopened = StateStore(tmp_path)
    try:
        record = reopened.technician(ALICE)
        assert record is not None
        assert record.totp_secret == SECRET
        assert record.notes == "n"
    finally:
        reopened.close()


def test_key_file_is_0600_in_a_0700_directory(tmp_path: Path, store: StateStore) -> None:
    store.add_technician(TechnicianRecord(ALICE, SECRET), time.time())
    key = tmp_path / "keys" / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(key.read_bytes()) == 32


def test_state_directory_is_private(tmp_path: Path, store: StateStore) -> None:
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_secret_does_not_open_with_another_key_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.add_technician(TechnicianRecord(ALICE, SECRET), time.time())
    store.close()
    (tmp_path / "keys" / "secrets.key").write_bytes(bytes(32))
    reopened = StateStore(tmp_path)
    try:
        with pytest.raises(StateError, match="does not open"):
            reopened.technician(ALICE)
    finally:
        reopened.close()


def test_truncated_key_file_is_a_state_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.add_technician(TechnicianRecord(ALICE, SECRET), time.time())
    store.close()
    (tmp_path / "keys" / "secrets.key").write_bytes(b"short")
    reopened = StateStore(tmp_path)
    try:
        with pytest.raises(StateError, match="32-byte key file"):
            reopened.technician(ALICE)
    finally:
        reopened.close()


# -- refusing a bad DB ----------------------------------------------------------------------


def test_corrupt_db_is_a_clear_state_error(tmp_path: Path) -> None:
    db = tmp_path / "state" / "shim.db"
    db.parent.mkdir(mode=0o700)
    db.write_bytes(b"\x13\x37 this is not an SQLite database \xff" * 200)
    with pytest.raises(StateError) as info:
        StateStore(tmp_path)
    message = str(info.value)
    assert str(db) in message
    assert "corrupt" in message
    assert "backup" in message
    assert "\n" not in message


def test_db_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state" / "shim.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StateError, match="newer"):
        StateStore(tmp_path)


def test_db_of_our_version_reopens(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    StateStore(tmp_path).close()


# -- the technician directory -----------------------------------------------------------------


def test_directory_merges_config_and_db_and_reports_conflicts(store: StateStore) -> None:
    from_config = {
        ALICE: TechnicianRecord(ALICE, CONFIG_SECRET),
        "dave": TechnicianRecord("dave", CONFIG_SECRET),
    }
    store.add_technician(TechnicianRecord(ALICE, SECRET), time.time())
    store.add_technician(TechnicianRecord(CAROL, SECRET), time.time())
    directory = TechnicianDirectory(from_config, store)

    assert sorted(directory) == sorted([ALICE, "dave", CAROL])
    assert len(directory) == 3
    assert directory[ALICE].totp_secret == CONFIG_SECRET  # the config file wins
    assert directory[CAROL].totp_secret == SECRET
    assert directory.get("nobody") is None
    with pytest.raises(KeyError):
        directory["nobody"]
    assert directory.conflicts() == [ALICE]


def test_directory_sees_enrolments_made_after_it_was_built(store: StateStore) -> None:
    directory = TechnicianDirectory({}, store)
    assert CAROL not in directory
    store.add_technician(TechnicianRecord(CAROL, SECRET), time.time())
    assert directory[CAROL].totp_secret == SECRET


# -- technicians: enrol, remove, unlock -------------------------------------------------------


def test_enrol_creates_a_160_bit_secret_usable_by_an_app(tmp_path: Path, store: StateStore) -> None:
    settings = settings_with(tmp_path)
    record = technicians.enrol(settings, store, CAROL, digits=8, notes="vendor")
    assert len(record.totp_secret) == 32
    assert store.technician(CAROL) == record
    uri = technicians.uri_for(settings, record)
    app = pyotp.parse_uri(uri)
    assert isinstance(app, pyotp.TOTP)
    assert app.digits == 8
    now = time.time()
    gate = TotpGate(TechnicianDirectory({}, store), time_source=lambda: now, store=store)
    assert gate.authenticate(CAROL, app.at(int(now))).result is AuthResult.OK
    assert [e.action for e in store.audit_log()] == ["technician_added"]


def test_enrol_refuses_an_id_from_the_config_file(tmp_path: Path, store: StateStore) -> None:
    with pytest.raises(TechnicianError, match="config file"):
        technicians.enrol(settings_with(tmp_path, ALICE), store, ALICE)
    assert store.technician_ids() == []


def test_enrol_refuses_a_duplicate(tmp_path: Path, store: StateStore) -> None:
    settings = settings_with(tmp_path)
    technicians.enrol(settings, store, CAROL)
    with pytest.raises(TechnicianError, match="already enrolled"):
        technicians.enrol(settings, store, CAROL)


@pytest.mark.parametrize("tid", ["two words", "", "x" * 200, "ctl\x1b"])
def test_enrol_refuses_ids_that_cannot_be_typed(
    tmp_path: Path, store: StateStore, tid: str
) -> None:
    with pytest.raises(TechnicianError):
        technicians.enrol(settings_with(tmp_path), store, tid)


def test_remove_is_audited(tmp_path: Path, store: StateStore) -> None:
    settings = settings_with(tmp_path, ALICE)
    technicians.enrol(settings, store, CAROL)
    technicians.remove(store, settings, CAROL)
    assert store.technician(CAROL) is None
    assert [(e.action, e.subject) for e in store.audit_log()][-1] == ("technician_removed", CAROL)
    with pytest.raises(TechnicianError, match="no technician"):
        technicians.remove(store, settings, CAROL)
    with pytest.raises(TechnicianError, match="config file"):
        technicians.remove(store, settings, ALICE)


def test_unlock_clears_lockout_keeps_replay_counter_and_is_audited(
    tmp_path: Path, store: StateStore
) -> None:
    settings = settings_with(tmp_path, ALICE)
    now = time.time()
    gate = TotpGate(
        TechnicianDirectory(settings.technician_records(), store),
        time_source=lambda: now,
        store=store,
        max_failures=3,
    )
    good = pyotp.TOTP(CONFIG_SECRET).at(int(now))
    wrong = f"{(int(good) + 500_000) % 1_000_000:06d}"
    assert gate.authenticate(ALICE, good).result is AuthResult.OK
    counter = store.get(ALICE).last_counter
    for _ in range(3):
        gate.authenticate(ALICE, wrong)
    assert gate.is_locked_out(ALICE)

    assert technicians.unlock(store, settings, ALICE, "ops-jane") is True
    assert not gate.is_locked_out(ALICE)
    assert store.get(ALICE).last_counter == counter
    assert gate.authenticate(ALICE, good).result is AuthResult.REPLAY
    entry = store.audit_log()[-1]
    assert (entry.action, entry.subject, entry.detail) == (
        "technician_unlocked",
        ALICE,
        {"operator": "ops-jane"},
    )
    assert technicians.unlock(store, settings, ALICE, "ops-jane") is False


def test_unlock_of_an_unknown_technician_is_refused(tmp_path: Path, store: StateStore) -> None:
    with pytest.raises(TechnicianError, match="no technician"):
        technicians.unlock(store, settings_with(tmp_path), "ghost", "ops-jane")
    assert store.audit_log() == []


def test_rows_name_the_source_of_each_technician(tmp_path: Path, store: StateStore) -> None:
    settings = settings_with(tmp_path, ALICE)
    technicians.enrol(settings, store, CAROL, algorithm="SHA256")
    rows = {row.technician_id: row for row in technicians.rows(settings, store)}
    assert rows[ALICE].source == "config file"
    assert rows[CAROL].source == "state DB"
    assert rows[CAROL].algorithm == "SHA256"
    assert rows[ALICE].algorithm == "SHA1"
