"""The state DB file, `<storage.root>/state/shim.db`: opening, checking,
migrating, and transactions.

Rules:
- WAL journal, `synchronous=FULL`: a transaction that returned is on disk.
- A DB that cannot be opened, fails its integrity check or has a schema from
  a newer version raises `StateError`: the daemon then keeps the port closed.
- `_SCHEMA` is append-only: a released version is never rewritten; a change
  is a new entry. Every connection (the store's, the outbox's) migrates
  inside the write lock, so two of them never apply a version twice.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shimmfa.errors import StateError

__all__ = ["StateDB", "connect", "db_path", "private_dir"]

_SCHEMA = [
    # version 1
    """
    CREATE TABLE technicians (
        technician_id TEXT PRIMARY KEY,
        sealed_secret BLOB NOT NULL,
        algorithm TEXT, digits INTEGER, period INTEGER,
        enrolment_date TEXT NOT NULL DEFAULT '',
        notes TEXT NOT NULL DEFAULT '',
        roles TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL
    );
    CREATE TABLE auth_state (
        key TEXT PRIMARY KEY,
        last_counter INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        failures_since REAL NOT NULL,
        locked_until REAL NOT NULL,
        attempts INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # version 2: named durable counters (the boot counter of heartbeats)
    """
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # version 3: the SIEM outbox (reporting/outbox.py): events wait here until a
    # sender has delivered them; `security` = 0 marks droppable heartbeats
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        security INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX outbox_droppable ON outbox (security, id);
    """,
    # version 4: the tamper latch (tamper/detector.py): one row while latched
    """
    CREATE TABLE tamper_latch (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # version 5: the login backoff of a port (state/port_backoff.py), so that a
    # restart does not reset it; `until` is wall-clock time
    """
    CREATE TABLE port_backoff (
        port TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        until REAL NOT NULL
    );
    """,
    # version 6: the state's identity (state/anchor.py): a random ID the anchor
    # file beside the keys remembers; a new generation at each recovery
    """
    CREATE TABLE state_identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state_id TEXT NOT NULL,
        generation INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # version 7: one outbox, several destinations (reporting/outbox.py): a bit
    # per destination still to deliver to (1 the SIEM, 2 central); a row goes
    # when no bit is left
    """
    ALTER TABLE outbox ADD COLUMN pending INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX outbox_siem ON outbox (id) WHERE pending & 1;
    CREATE INDEX outbox_central ON outbox (id) WHERE pending & 2;
    """,
    # version 8: MFA chains at the port (state/factors.py): a technician's further
    # factors (sealed like their first) and each chain's state (core.chain_state JSON)
    """
    CREATE TABLE technician_factors (
        technician_id TEXT NOT NULL,
        label TEXT NOT NULL,
        sealed_secret BLOB NOT NULL,
        algorithm TEXT, digits INTEGER, period INTEGER,
        created_at REAL NOT NULL,
        PRIMARY KEY (technician_id, label)
    );
    CREATE TABLE chain_state (
        subject TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );
    """,
    # version 9: break-glass (state/breakglass.py): the shim's break-glass TOTP
    # secret, sealed, and the public record of how it was dealt (no secret)
    """
    CREATE TABLE breakglass (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sealed_secret BLOB NOT NULL,
        deal TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL
    );
    """,
    # version 10: sync with central. The technicians of central's last good bundle
    # (state/synced.py; secrets sealed like the others), that bundle's version and
    # when it was accepted, the last sync attempts, and each recording's upload
    # (state/uploads.py)
    """
    CREATE TABLE synced_technicians (
        technician_id TEXT PRIMARY KEY,
        sealed_secret BLOB NOT NULL,
        algorithm TEXT NOT NULL, digits INTEGER NOT NULL, period INTEGER NOT NULL,
        roles TEXT NOT NULL, name TEXT NOT NULL, company TEXT NOT NULL
    );
    CREATE TABLE bundle_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        issued_at REAL NOT NULL,
        accepted_at REAL NOT NULL,
        technicians INTEGER NOT NULL
    );
    CREATE TABLE sync_attempts (
        name TEXT PRIMARY KEY,
        at REAL NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE recording_uploads (
        session_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        sent INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        next_try REAL NOT NULL,
        detail TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
]


def private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def db_path(storage_root: Path) -> Path:
    """Where the state DB of a storage root is."""
    return Path(storage_root) / "state" / "shim.db"


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the state DB at `path`: autocommit (explicit
    transactions), WAL, `synchronous=FULL`, usable from any thread. The file
    is the shim's alone (0600; SQLite gives its -wal and -shm files the same
    mode)."""
    # Never open and close the file beside SQLite once it exists: closing any
    # descriptor of it drops every POSIX lock this process holds on it,
    # SQLite's own included (a reader would keep a stale snapshot).
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            os.chmod(path, 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        db.close()
        raise
    return db


class _NewerSchemaError(sqlite3.DatabaseError):
    pass


class StateDB:
    """One checked, migrated connection to the state DB. Thread-safe."""

    def __init__(self, storage_root: Path) -> None:
        self.root = Path(storage_root)
        self.path = db_path(self.root)
        self._lock = threading.RLock()
        try:
            private_dir(self.path.parent)
            self._db = connect(self.path)
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            if hasattr(self, "_db"):
                self._db.close()  # do not leak the connection of a refused DB
            if isinstance(exc, _NewerSchemaError):
                raise StateError(str(exc)) from None
            raise StateError(
                f"state DB {self.path} is unreadable or corrupt ({exc}); the port stays "
                "closed. Restore the file from backup, or move it aside to start afresh "
                "(this forgets enrolments, lockouts and replay counters)."
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_SCHEMA):
            raise _NewerSchemaError(
                f"state DB {self.path} was written by a newer shimmfa (schema {version}, this "
                f"version knows {len(_SCHEMA)}); install that version again. Do not move the "
                "file aside: it holds the replay counters and lockouts."
            )
        for number in range(version, len(_SCHEMA)):
            with self._transaction() as db:
                # Another connection (the outbox's own) may have migrated
                # since we looked: re-read inside the write lock.
                if db.execute("PRAGMA user_version").fetchone()[0] > number:
                    continue
                for statement in _SCHEMA[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # e.g. the disk is full: nothing was stored
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StateError(f"state DB {self.path} could not commit: {exc}") from exc
