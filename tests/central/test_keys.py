"""Central's keys from the command line: `central keys init|show`, `central
init` making them, `serve` refusing to start without them (exit 2, one
line), key files readable by others refused; and migration 0002 filling
the session index from the events stored before it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select

from central.server import SHIMMFA
from shimmfa.central.db import open_engine
from shimmfa.central.keys import load_keys
from shimmfa.central.models import EventRow
from shimmfa.central.schema import alembic_config
from shimmfa.central.tables import SessionRow, TechnicianLogin
from shimmfa.errors import KeyFileError


def central(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SHIMMFA), "central", *args], capture_output=True, text=True, timeout=60,
        check=False, cwd=cwd,
    )  # fmt: skip


def test_keys_init_makes_private_files_and_show_prints_the_public_halves(tmp_path: Path) -> None:
    made = central("keys", "init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    directory = tmp_path / "central-keys"
    assert directory.stat().st_mode & 0o777 == 0o700
    for name in ("signing.pem", "recording.agekey", "secrets.key"):
        assert (directory / name).stat().st_mode & 0o777 == 0o600
    keys = load_keys(directory)
    shown = central("keys", "show", cwd=tmp_path)
    assert shown.stdout.splitlines() == [
        f"signing key (Ed25519): {keys.public_key_text}",
        f"recording recipient: {keys.recording_recipient}",
    ]
    assert central("keys", "init", cwd=tmp_path).returncode == 0  # never overwrites
    assert load_keys(directory).public_key_raw == keys.public_key_raw
    (directory / "secrets.key").chmod(0o640)
    refused = central("keys", "show", cwd=tmp_path)
    assert refused.returncode != 0 and "chmod 600" in refused.stderr
    with pytest.raises(KeyFileError):
        load_keys(directory)


def test_serve_refuses_to_start_without_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    assert central("init", "--database-url", url, "--keys-dir", "k", cwd=tmp_path).returncode == 0
    done = central("serve", "--database-url", url, "--keys-dir", "elsewhere", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "central keys init" in done.stderr


def test_migration_0002_indexes_the_sessions_already_stored(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/m.db")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    now = time.time()
    rows = [
        ("session_start", {"session_id": "s1", "technician_id": "tech-1"}),
        ("auth_success", {"session_id": "s1", "technician_id": "tech-1"}),
        ("session_end", {"session_id": "s1", "terminal_reason": "idle_timeout"}),
    ]
    with engine.begin() as connection:
        for n, (kind, fields) in enumerate(rows):
            connection.execute(
                insert(EventRow).values(
                    event_id=f"e{n}", source="shim", shim_id="shim-1", kind=kind, severity=5,
                    security=True, at=now + n, received_at=now + n, fields=fields,
                )
            )  # fmt: skip
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        (session,) = connection.execute(select(SessionRow)).all()
        (login,) = connection.execute(select(TechnicianLogin)).all()
    engine.dispose()
    assert (session.technician_id, session.started_at, session.ended_at) == ("tech-1", now, now + 2)
    assert session.terminal_reason == "idle_timeout"
    assert (login.technician_id, login.shim_id, login.session_id) == ("tech-1", "shim-1", "s1")
