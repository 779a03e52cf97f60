"""The shim's heartbeats (`shimmfa.shim.reporting.heartbeats`) on a real state DB: the
boot counter survives restarts, `seq` grows within a boot, and signatures
check against the key `shimmfa keys show` prints (run as a subprocess).
The hardware ID is checked against
`systemd-id128`, signatures with `cryptography` directly."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shimmfa.core.heartbeat import Rejection, verify_heartbeat
from shimmfa.core.recording_reader import parse_public_key
from shimmfa.errors import ConfigError, HeartbeatError
from shimmfa.shim.reporting.heartbeats import (
    APP_ID,
    BOOT_COUNTER,
    HeartbeatSource,
    app_specific_machine_id,
    machine_hardware_id,
)
from shimmfa.shim.state.db import _SCHEMA
from shimmfa.shim.state.keys import init_keys
from shimmfa.shim.state.store import StateStore
from trees import small_package

SHIMMFA = Path(sys.executable).with_name("shimmfa")
SHIM = "shim-empump-001"
SESSION = "20261123T105459.123Z-3f9a1c2b5d7e"
T0 = 1_795_431_299.0
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def spec_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_config(tmp_path: Path, root: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"shim: {{id: {SHIM}}}\n"
        "serial: {technician_side_path: /tmp/shim-tech, device_side_path: /tmp/shim-dev}\n"
        f"storage: {{root: {json.dumps(str(root))}}}\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, tmp_path / "storage")


def source(tmp_path: Path, config: Path, **options: Any) -> HeartbeatSource:
    options.setdefault("package", small_package(tmp_path))
    return HeartbeatSource(
        tmp_path / "storage", KEY, SHIM, options.pop("hardware_id", "hw-1"), config, **options
    )


def sha256sum(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["sha256sum", *args], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout


# -- boot counter and seq ---------------------------------------------------------------------


def test_boot_count_increments_across_restarts(tmp_path: Path, config: Path) -> None:
    counts = []
    for _ in range(3):
        counts.append(source(tmp_path, config).begin_boot(monotonic=0.0))
    assert counts == [1, 2, 3]
    with sqlite3.connect(tmp_path / "storage" / "state" / "shim.db") as db:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (BOOT_COUNTER,)).fetchone()
    assert row == (3,)


def test_boot_count_is_per_storage_root(tmp_path: Path, config: Path) -> None:
    source(tmp_path, config).begin_boot()
    other = HeartbeatSource(
        tmp_path / "other", KEY, SHIM, "hw-1", config, package=small_package(tmp_path)
    )
    assert other.begin_boot() == 1


def test_boot_count_uses_the_daemons_store_and_leaves_it_open(tmp_path: Path, config: Path) -> None:
    store = StateStore(tmp_path / "storage")
    try:
        beats = source(tmp_path, config, store=store)
        assert beats.boot_count is None
        assert beats.begin_boot() == 1
        assert beats.boot_count == 1
        assert store.counter(BOOT_COUNTER) == 1
        assert store.increment("other") == 1  # still usable
    finally:
        store.close()
    assert source(tmp_path, config).begin_boot() == 2


def test_a_version_1_state_db_is_migrated(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "storage" / "state" / "shim.db"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA[0])
    db.execute("INSERT INTO audit (at, action, subject, detail) VALUES (1, 'x', 'y', '{}')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert source(tmp_path, config).begin_boot() == 1
    store = StateStore(tmp_path / "storage")
    try:
        assert [entry.action for entry in store.audit_log()] == ["x"]
    finally:
        store.close()


def test_begin_boot_once_and_before_make(tmp_path: Path, config: Path) -> None:
    beats = source(tmp_path, config)
    with pytest.raises(RuntimeError, match="begin_boot"):
        beats.make("ok", None, T0, 1.0)
    beats.begin_boot()
    with pytest.raises(RuntimeError, match="once"):
        beats.begin_boot()
    assert source(tmp_path, config).begin_boot() == 2  # the refused call counted nothing


def test_seq_strictly_increases_within_a_boot_and_restarts(tmp_path: Path, config: Path) -> None:
    beats = source(tmp_path, config)
    beats.begin_boot(monotonic=100.0)
    wires = [beats.make("ok", None, T0 + i, 100.0 + i) for i in range(5)]
    assert [w["payload"]["seq"] for w in wires] == [1, 2, 3, 4, 5]
    assert {w["payload"]["boot_count"] for w in wires} == {1}
    assert [w["payload"]["uptime_s"] for w in wires] == [0.0, 1.0, 2.0, 3.0, 4.0]
    again = source(tmp_path, config)
    again.begin_boot(monotonic=5.0)
    first = again.make("tampered", SESSION, T0 + 10, 7.25)["payload"]
    assert (first["boot_count"], first["seq"], first["uptime_s"]) == (2, 1, 2.25)
    assert (first["state"], first["open_session"]) == ("tampered", SESSION)
    assert first["sent_at"] == "2026-11-23T10:55:09.000Z"


def test_a_refused_heartbeat_does_not_use_up_a_seq(tmp_path: Path, config: Path) -> None:
    beats = source(tmp_path, config)
    beats.begin_boot()
    with pytest.raises(HeartbeatError, match="state"):
        beats.make("broken", None, T0, 1.0)
    assert beats.make("ok", None, T0, 1.0)["payload"]["seq"] == 1


def test_seq_is_unique_across_threads(tmp_path: Path, config: Path) -> None:
    beats = source(tmp_path, config)
    beats.begin_boot(monotonic=0.0)
    seen: list[int] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        for _ in range(25):
            seen.append(beats.make("ok", None, T0, 1.0)["payload"]["seq"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 101))


def test_heartbeats_verify_in_order_and_a_replay_is_refused(tmp_path: Path, config: Path) -> None:
    keys = {SHIM: parse_public_key("ed25519:" + base64.b64encode(raw(KEY)).decode())}
    last: dict[str, tuple[int, int]] = {}
    for boot in (1, 2):
        beats = source(tmp_path, config)
        beats.begin_boot(monotonic=0.0)
        for _ in range(2):
            wire = beats.make("ok", None, T0, 1.0)
            beat = verify_heartbeat(json.dumps(wire).encode(), keys, last)
            last[SHIM] = beat.position
        assert last[SHIM] == (boot, 2)
    with pytest.raises(HeartbeatError) as caught:
        verify_heartbeat(wire, keys, last)
    assert caught.value.reason == Rejection.NOT_NEWER


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


# -- signatures against `shimmfa keys show` ---------------------------------------------------


def test_signatures_verify_against_keys_show(tmp_path: Path, config: Path) -> None:
    assert SHIMMFA.exists(), f"the shimmfa script is not installed next to {sys.executable}"
    keys, _ = init_keys(tmp_path / "storage")
    shown = subprocess.run(
        [str(SHIMMFA), "keys", "show", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    match = re.search(r"signing key \(Ed25519\): ed25519:(\S+)", shown)
    assert match, shown
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(match.group(1), validate=True))

    beats = HeartbeatSource(tmp_path / "storage", keys, SHIM, None, config)
    beats.begin_boot()
    wire = beats.make("ok", SESSION, T0, 60.0)
    public.verify(base64.b64decode(wire["sig"], validate=True), spec_bytes(wire["payload"]))
    keyring = {SHIM: parse_public_key(f"ed25519:{match.group(1)}")}
    assert verify_heartbeat(wire, keyring, {}).open_session == SESSION

    forged = HeartbeatSource(tmp_path / "storage", KEY, SHIM, None, config)
    forged.begin_boot()
    with pytest.raises(HeartbeatError) as caught:
        verify_heartbeat(forged.make("ok", None, T0, 60.0), keyring, {})
    assert caught.value.reason == Rejection.BAD_SIGNATURE


# -- digests ----------------------------------------------------------------------------------


def test_config_sha256_is_the_file_digest(tmp_path: Path, config: Path) -> None:
    beats = source(tmp_path, config)
    expected = sha256sum(str(config)).split()[0]
    assert beats.config_sha256 == expected
    beats.begin_boot()
    assert beats.make("ok", None, T0, 1.0)["payload"]["config_sha256"] == expected


def test_an_unreadable_config_is_a_config_error(tmp_path: Path, config: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml"):
        source(tmp_path, tmp_path / "missing.yaml")


# -- hardware ID ------------------------------------------------------------------------------


def test_a_configured_hardware_id_is_used(tmp_path: Path, config: Path) -> None:
    beats = source(tmp_path, config, hardware_id="serial-4711", machine_id_path=tmp_path / "x")
    beats.begin_boot()
    assert beats.make("ok", None, T0, 1.0)["payload"]["hardware_id"] == "serial-4711"


def test_an_unusable_hardware_id_is_refused_at_start(tmp_path: Path, config: Path) -> None:
    with pytest.raises(HeartbeatError, match="hardware_id"):
        source(tmp_path, config, hardware_id="has space")
    with pytest.raises(HeartbeatError, match="shim_id"):
        HeartbeatSource(tmp_path, KEY, "", "hw", config, package=small_package(tmp_path))


def test_without_config_the_machine_id_is_used_app_specifically(
    tmp_path: Path, config: Path
) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    beats = source(tmp_path, config, hardware_id=None, machine_id_path=machine_id)
    derived = beats.hardware_id
    assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", derived)
    assert "0123456789abcdef" not in derived  # the raw machine ID is not sent
    assert derived == machine_hardware_id(machine_id)
    machine_id.write_text("fedcba9876543210fedcba9876543210\n")
    assert machine_hardware_id(machine_id) != derived
    assert app_specific_machine_id("0123456789abcdef0123456789abcdef", "0" * 32) != derived


@pytest.mark.parametrize(
    "content", [None, "", "uninitialized\n", "0" * 32, "0123456789ABCDEF0123456789ABCDEF", "12"]
)
def test_without_a_usable_machine_id_it_says_unknown(
    tmp_path: Path, config: Path, content: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    machine_id = tmp_path / "machine-id"
    if content is not None:
        machine_id.write_text(content)
    beats = source(tmp_path, config, hardware_id=None, machine_id_path=machine_id)
    assert beats.hardware_id == "unknown"
    assert str(machine_id) in caplog.text


@pytest.mark.skipif(
    shutil.which("systemd-id128") is None or not Path("/etc/machine-id").exists(),
    reason="needs systemd-id128 and /etc/machine-id",
)
def test_the_hardware_id_matches_systemd_id128() -> None:
    if machine_hardware_id() is None:
        pytest.skip("/etc/machine-id is not initialised")
    expected = subprocess.run(
        ["systemd-id128", "machine-id", f"--app-specific={APP_ID}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert machine_hardware_id() == expected
