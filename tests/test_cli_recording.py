"""The real `shimmfa keys` and `shimmfa recording` commands on recordings
made by the recorder: exit codes 0 valid / 1 tampered (frame named) / 3
truncated (last good frame and time named), exports checked byte for byte
and with Debian's `asciinema cat`, the list table, key files and modes.

Expected frame numbers and times come from reading the file layout of
docs/recording-format.md in this file, not from the verifier.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shimmfa.core.recording import Header, RecordingEncoder
from shimmfa.shim.recorder import Direction, SessionRecorder
from waiting import wait_for

SHIMMFA = Path(sys.executable).with_name("shimmfa")
TRAFFIC = [
    (Direction.OUT, b"\x1b[1mExampleMed pump v3.2\x1b[0m\r\n> "),
    (Direction.IN, b"rate\r"),
    (Direction.OUT, "rate=5.0 ml/h (µ-bolus off)\r\n> ".encode()),
    (Direction.IN, bytes(range(256))),
    (Direction.OUT, "bye ✓\r\n".encode()),
]
DEVICE_OUTPUT = b"".join(d for k, d in TRAFFIC if k is Direction.OUT)
TECHNICIAN_INPUT = b"".join(d for k, d in TRAFFIC if k is Direction.IN)


def shimmfa(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert SHIMMFA.exists(), f"the shimmfa script is not installed next to {sys.executable}"
    return subprocess.run(
        [str(SHIMMFA), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


def shimmfa_bytes(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SHIMMFA), *map(str, args)], capture_output=True, timeout=60, check=False
    )


def write_config(directory: Path, root: Path) -> Path:
    config = directory / "config.yaml"
    config.write_text(
        "shim: {id: shim-empump-001}\n"
        "serial: {technician_side_path: /tmp/shim-tech, device_side_path: /tmp/shim-dev}\n"
        f"storage: {{root: {json.dumps(str(root))}}}\n",
        encoding="utf-8",
    )
    return config


@dataclass(frozen=True)
class Rec:
    kind: bytes
    start: int
    end: int
    frame: int | None


def layout(data: bytes) -> list[Rec]:
    out, offset, frames = [], 8, 0
    while offset + 5 <= len(data):
        kind = data[offset : offset + 1]
        end = offset + 5 + struct.unpack_from(">I", data, offset + 1)[0]
        out.append(Rec(kind, offset, end, frames if kind == b"F" else None))
        frames += kind == b"F"
        offset = end
    return out


def seal_info(data: bytes, rec: Rec) -> dict[str, Any]:
    (size,) = struct.unpack_from(">I", data, rec.start + 5)
    return json.loads(data[rec.start + 9 : rec.start + 9 + size])


@dataclass(frozen=True)
class Shim:
    config: Path
    root: Path
    identity: Path
    pubkey: str
    alice: Path  # complete, several frames and checkpoints
    bob: Path  # complete, ended by a tamper event
    carol: Path  # truncated: the footer is cut off
    work: Path


def record(recorder: SessionRecorder, technician: str, reason: str) -> Path:
    """One session; each chunk waits for its own frame (and checkpoints)."""
    session_id = recorder.start_session(technician)
    path = next(p for p in (recorder.sessions_dir).iterdir() if session_id in p.name)
    recorder.append_event(session_id, {"event": "auth_success", "technician_id": technician})
    for written, (direction, data) in enumerate(TRAFFIC, 1):
        wait_for(lambda n=written: frames_in(path) == n, "the writer to write the last chunk")
        recorder.append_traffic(session_id, direction, data)
    recorder.end_session(session_id, reason)
    assert frames_in(path) == 1 + len(TRAFFIC)
    return path


def frames_in(path: Path) -> int:
    data = path.read_bytes()
    return sum(r.kind == b"F" and r.end <= len(data) for r in layout(data))


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Shim:
    base = tmp_path_factory.mktemp("cli")
    root = base / "storage"
    config = write_config(base, root)
    recorder = SessionRecorder(root, "shim-empump-001", fsync_interval=0.001)
    try:
        alice = record(recorder, "alice@example.org", "technician_hangup")
        bob = record(recorder, "bob@example.org", "tamper:case_opened")
        carol = record(recorder, "carol@example.org", "technician_hangup")
    finally:
        recorder.close()
    data = carol.read_bytes()
    carol.write_bytes(data[: layout(data)[-1].start])
    pem = serialization.load_pem_private_key((root / "keys" / "signing.pem").read_bytes(), None)
    assert isinstance(pem, Ed25519PrivateKey)
    raw = pem.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    work = base / "work"
    work.mkdir()
    return Shim(
        config,
        root,
        root / "keys" / "recording.agekey",
        "ed25519:" + base64.b64encode(raw).decode(),
        alice,
        bob,
        carol,
        work,
    )


def variant(shim: Shim, name: str, data: bytes) -> Path:
    path = shim.work / name
    path.write_bytes(data)
    return path


# -- keys ------------------------------------------------------------------------------


def key_lines(output: str) -> tuple[str, str]:
    signing = re.search(r"^signing key \(Ed25519\): (\S+)$", output, re.M)
    recipient = re.search(r"^age recipient: +(\S+)$", output, re.M)
    assert signing and recipient, output
    return signing.group(1), recipient.group(1)


def test_keys_init_makes_private_keys_once_and_show_prints_them(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "storage")
    first = shimmfa("keys", "init", "--config", config)
    assert first.returncode == 0, first.stderr
    assert "created: signing.pem, shim.agekey" in first.stdout
    keys = tmp_path / "storage" / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    files = {p.name: p.read_bytes() for p in keys.iterdir()}
    assert sorted(files) == ["shim.agekey", "signing.pem", "state.anchor"]
    for name in files:
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600

    signing, recipient = key_lines(first.stdout)
    private = serialization.load_pem_private_key(files["signing.pem"], password=None)
    assert isinstance(private, Ed25519PrivateKey)
    prefix, _, encoded = signing.partition(":")
    assert prefix == "ed25519"
    assert base64.b64decode(encoded, validate=True) == private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert recipient.startswith("age1")
    if shutil.which("age-keygen"):
        derived = subprocess.run(
            ["age-keygen", "-y", str(keys / "shim.agekey")],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert derived.stdout.strip() == recipient

    again = shimmfa("keys", "init", "--config", config)
    assert again.returncode == 0, again.stderr
    assert "keys already exist; unchanged" in again.stdout
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == files
    assert key_lines(again.stdout) == (signing, recipient)
    show = shimmfa("keys", "show", "--config", config)
    assert show.returncode == 0, show.stderr
    assert key_lines(show.stdout) == (signing, recipient)


@pytest.mark.parametrize(
    ("target", "loose", "fix"),
    [
        ("keys/signing.pem", 0o644, "chmod 600"),
        ("keys/shim.agekey", 0o640, "chmod 600"),
        ("keys", 0o755, "chmod 700"),
    ],
)
def test_keys_show_refuses_keys_others_can_read(
    tmp_path: Path, target: str, loose: int, fix: str
) -> None:
    config = write_config(tmp_path, tmp_path / "storage")
    assert shimmfa("keys", "init", "--config", config).returncode == 0
    path = tmp_path / "storage" / target
    path.chmod(loose)
    result = shimmfa("keys", "show", "--config", config)
    assert result.returncode == 5
    assert f"{fix} {path}" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_show_without_keys_says_how_to_make_them(tmp_path: Path) -> None:
    result = shimmfa("keys", "show", "--config", write_config(tmp_path, tmp_path / "storage"))
    assert result.returncode == 5
    assert "shimmfa keys init" in result.stderr


# -- verify ----------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--identity"], ["--pubkey"], ["--identity", "--pubkey"]])
def test_verify_a_complete_recording_exits_0(shim: Shim, extra: list[str]) -> None:
    args: list[str | Path] = []
    for flag in extra:
        args += [flag, shim.identity if flag == "--identity" else shim.pubkey]
    result = shimmfa("recording", "verify", shim.alice, shim.bob, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": valid:") == 2
    assert ("pass --pubkey to pin it" in result.stdout) == ("--pubkey" not in extra)


def flip_frame(data: bytes, index: int) -> bytes:
    rec = next(r for r in layout(data) if r.frame == index)
    middle = (rec.start + 5 + rec.end) // 2
    return data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]


@pytest.mark.parametrize("index", [0, 2, 5])
@pytest.mark.parametrize("with_identity", [False, True])
def test_verify_a_tampered_recording_exits_1_naming_the_frame(
    shim: Shim, index: int, with_identity: bool
) -> None:
    path = variant(shim, f"flip{index}.shrec", flip_frame(shim.alice.read_bytes(), index))
    args = ["--identity", shim.identity] if with_identity else []
    result = shimmfa("recording", "verify", path, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tampered" in result.stdout
    assert re.search(rf"\bframe {index}\b", result.stdout), result.stdout


def test_verify_a_recording_with_a_frame_removed_exits_1(shim: Shim) -> None:
    data = shim.alice.read_bytes()
    rec = next(r for r in layout(data) if r.frame == 3)
    path = variant(shim, "removed.shrec", data[: rec.start] + data[rec.end :])
    result = shimmfa("recording", "verify", path)
    assert result.returncode == 1
    assert re.search(r"\bframe 3\b", result.stdout), result.stdout


def test_verify_a_truncated_recording_exits_3_naming_the_last_good_frame(shim: Shim) -> None:
    data = shim.carol.read_bytes()
    records = layout(data)
    assert records[-1].end == len(data) and records[-1].kind in (b"F", b"S")
    seal = [r for r in records if r.kind == b"S"][-1]
    info = seal_info(data, seal)
    last_sealed = info["frames"] - 1
    when = dt.datetime.fromtimestamp(info["last_frame_wall"], dt.UTC).isoformat()
    result = shimmfa("recording", "verify", shim.carol)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "truncated" in result.stdout
    assert f"last good frame {last_sealed}" in result.stdout
    assert when in result.stdout

    with_identity = shimmfa("recording", "verify", shim.carol, "--identity", shim.identity)
    assert with_identity.returncode == 3
    last_frame = max(r.frame for r in records if r.frame is not None)
    assert f"last good frame {last_frame}" in with_identity.stdout


def test_verify_cut_in_the_middle_of_a_record_exits_3(shim: Shim) -> None:
    data = shim.alice.read_bytes()
    rec = next(r for r in layout(data) if r.frame == 4)
    path = variant(shim, "torn.shrec", data[: rec.end - 3])
    result = shimmfa("recording", "verify", path)
    assert result.returncode == 3, result.stdout
    assert "torn bytes" in result.stdout


def test_verify_reports_the_worst_of_several_files(shim: Shim) -> None:
    tampered = variant(shim, "worst.shrec", flip_frame(shim.alice.read_bytes(), 1))
    assert shimmfa("recording", "verify", shim.alice, shim.carol).returncode == 3
    assert shimmfa("recording", "verify", shim.carol, tampered, shim.alice).returncode == 1


@pytest.mark.parametrize(
    "content", [b"", b"SHREC/1\n", b"hello world", b"SHREC/2\nH\x00\x00\x00\x00"]
)
def test_verify_something_that_is_not_a_recording_exits_1(shim: Shim, content: bytes) -> None:
    path = variant(shim, "not.shrec", content)
    result = shimmfa("recording", "verify", path)
    assert result.returncode == 1
    assert "not a recording" in result.stdout
    assert "Traceback" not in result.stderr


def test_verify_bytes_after_the_footer_exits_1(shim: Shim) -> None:
    path = variant(shim, "appended.shrec", shim.alice.read_bytes() + b"\n")
    result = shimmfa("recording", "verify", path)
    assert result.returncode == 1 and "after the footer" in result.stdout


def forged_recording(key: Ed25519PrivateKey, session_id: str) -> bytes:
    """A whole recording made by someone else's key, claiming to be our shim."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    header = Header(
        session_id=session_id,
        shim_id="shim-empump-001",
        technician_id="alice@example.org",
        started_at=time.time(),
        signing_key="ed25519:" + base64.b64encode(raw).decode(),
        recipients=(),
        encrypted_dek=b"",
    )
    encoder = RecordingEncoder(header, os.urandom(32), key.sign)
    now = time.time()
    parts = [encoder.header_record, encoder.frame([("out", 0.1, now, b"all is well")])]
    parts.append(encoder.footer(now + 1, header.started_at, "technician_hangup"))
    return b"".join(parts)


def test_a_recording_signed_by_another_key_fails_with_the_shims_pubkey(shim: Shim) -> None:
    forger = Ed25519PrivateKey.generate()
    path = variant(
        shim, "forged.shrec", forged_recording(forger, "20261123T105459.123Z-000000000000")
    )
    unpinned = shimmfa("recording", "verify", path)
    assert unpinned.returncode == 0  # anyone can sign: that is why --pubkey exists
    assert "pass --pubkey to pin it" in unpinned.stdout
    assert shim.pubkey not in unpinned.stdout
    pinned = shimmfa("recording", "verify", path, "--pubkey", shim.pubkey)
    assert pinned.returncode == 1
    assert "different shim key" in pinned.stdout


def test_verify_with_an_identity_that_cannot_open_the_key_is_a_key_error_not_tampering(
    shim: Shim, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.agekey"
    SessionRecorder(tmp_path / "other", "other").close()
    shutil.copy(tmp_path / "other" / "keys" / "recording.agekey", stranger)
    result = shimmfa("recording", "verify", shim.alice, "--identity", stranger)
    assert result.returncode == 5
    assert "cannot open this recording's data key" in result.stderr
    assert "tampered" not in result.stdout + result.stderr


def test_verify_refuses_a_malformed_pubkey(shim: Shim) -> None:
    result = shimmfa("recording", "verify", shim.alice, "--pubkey", "ed25519:short")
    assert result.returncode == 1
    assert "ed25519:<base64>" in result.stderr


# -- export ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("out", DEVICE_OUTPUT), ("in", TECHNICIAN_INPUT), ("both", b"".join(d for _, d in TRAFFIC))],
)
def test_export_raw_is_byte_exact(shim: Shim, direction: str, expected: bytes) -> None:
    result = shimmfa_bytes(
        "recording", "export", shim.alice, "--identity", shim.identity,
        "--format", "raw", "--direction", direction,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_export_jsonl_to_a_file(shim: Shim) -> None:
    out = shim.work / "alice.jsonl"
    result = shimmfa(
        "recording", "export", shim.bob, "-i", shim.identity, "--format", "jsonl", "-o", out
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["type"] == "session_header"
    assert lines[0]["technician_id"] == "bob@example.org"
    assert lines[1]["type"] == "meta" and lines[1]["event"] == "auth_success"
    traffic = [line for line in lines if line["type"] == "traffic"]
    assert [(t["direction"], bytes.fromhex(t["data_hex"]), t["len"]) for t in traffic] == [
        (d.value, data, len(data)) for d, data in TRAFFIC
    ]
    assert lines[-1]["type"] == "session_footer"
    assert lines[-1]["terminal_reason"] == "tamper:case_opened"
    assert lines[-1]["bytes_outbound"] == len(DEVICE_OUTPUT)


def export_asciicast(shim: Shim, path: Path) -> Path:
    out = shim.work / (path.stem + ".cast")
    result = shimmfa(
        "recording", "export", path, "-i", shim.identity, "--format", "asciicast", "-o", out
    )
    assert result.returncode == 0, result.stderr
    return out


def test_export_asciicast_is_valid_v2(shim: Shim) -> None:
    header, *events = [
        json.loads(line)
        for line in export_asciicast(shim, shim.alice).read_text(encoding="utf-8").splitlines()
    ]
    assert header["version"] == 2
    assert isinstance(header["width"], int) and isinstance(header["height"], int)
    assert all(isinstance(e, list) and len(e) == 3 and e[1] in ("o", "i") for e in events)
    times = [e[0] for e in events]
    assert all(isinstance(t, int | float) and t >= 0 for t in times)
    assert times == sorted(times)
    assert "".join(e[2] for e in events if e[1] == "o") == DEVICE_OUTPUT.decode()
    assert "".join(e[2] for e in events if e[1] == "i") == TECHNICIAN_INPUT.decode(
        "utf-8", "replace"
    )


# asciinema 2.x `cat` opens /dev/tty (to set raw mode): give it a controlling
# terminal of its own (setsid, then open a fresh PTY slave) and keep stdout a pipe.
WITH_TTY = (
    "import os, sys; os.setsid(); os.close(os.open(sys.argv[1], os.O_RDWR)); "
    "os.execvp('asciinema', ['asciinema', 'cat', sys.argv[2]])"
)


@pytest.mark.skipif(shutil.which("asciinema") is None, reason="Debian's asciinema not installed")
def test_asciinema_cat_prints_the_device_output(shim: Shim) -> None:
    cast = export_asciicast(shim, shim.alice)
    master, slave = os.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-c", WITH_TTY, os.ttyname(slave), str(cast)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == DEVICE_OUTPUT


def test_export_refuses_a_tampered_recording(shim: Shim) -> None:
    path = variant(shim, "tampered-export.shrec", flip_frame(shim.alice.read_bytes(), 2))
    result = shimmfa_bytes("recording", "export", path, "-i", shim.identity, "--format", "raw")
    assert result.returncode == 1
    assert result.stdout == b""
    assert b"refusing to export" in result.stderr


def test_export_of_a_truncated_recording_warns_and_gives_what_verified(shim: Shim) -> None:
    result = shimmfa_bytes(
        "recording", "export", shim.carol, "-i", shim.identity, "--format", "raw"
    )
    assert result.returncode == 0
    assert b"warning" in result.stderr and b"truncated" in result.stderr
    assert result.stdout == DEVICE_OUTPUT  # every frame decrypts; only the footer is gone


# -- list ------------------------------------------------------------------------------


def test_list_shows_each_session_with_technician_reason_and_status(shim: Shim) -> None:
    result = shimmfa("recording", "list", "--config", shim.config)
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[2].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
        for line in result.stdout.splitlines()
        if line.count("│") >= 9
    }
    assert set(rows) == {"alice@example.org", "bob@example.org", "carol@example.org"}
    for technician, path in (("alice@example.org", shim.alice), ("bob@example.org", shim.bob)):
        session_id = json.loads(
            shimmfa("recording", "export", path, "-i", shim.identity).stdout.splitlines()[0]
        )["session_id"]
        assert rows[technician][0] == session_id
    assert (rows["alice@example.org"][6], rows["alice@example.org"][7]) == (
        "technician_hangup",
        "valid",
    )
    assert (rows["bob@example.org"][6], rows["bob@example.org"][7]) == (
        "tamper:case_opened",
        "valid",
    )
    assert rows["bob@example.org"][4:6] == [str(len(TECHNICIAN_INPUT)), str(len(DEVICE_OUTPUT))]
    assert (rows["carol@example.org"][6], rows["carol@example.org"][7]) == ("-", "truncated")
    assert "3 recording(s)" in result.stdout
