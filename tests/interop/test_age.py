"""Interop with Debian's `age`: the data key in a recording's header
(`dek_age`, base64 of an age v1 file) opens with `age -d -i KEY`, to the same
32 bytes pyrage gives, for the shim's local recording identity and for
identities made by `age-keygen` and configured as recipients; and that key
really decrypts the recording."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shimmfa.core.recording_reader import Status, read, verify
from shimmfa.shim.recorder import Direction, SessionRecorder
from shimmfa.shim.recorder.files import unwrap_dek

pytestmark = pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("age-keygen") is None,
    reason="Debian's age and age-keygen are not installed",
)

TRAFFIC = [(Direction.OUT, b"pump menu\r\n> "), (Direction.IN, b"history\r")]


def age_decrypt(ciphertext: Path, identity: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["age", "-d", "-i", str(identity), str(ciphertext)],
        capture_output=True,
        check=False,
        timeout=30,
    )


def age_keygen(path: Path) -> str:
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True, timeout=30)
    return subprocess.run(
        ["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def dek_file(recording: Path, out: Path) -> Path:
    header = verify(recording.read_bytes()).header
    out.write_bytes(base64.b64decode(header["dek_age"], validate=True))
    return out


@pytest.fixture
def recorders(tmp_path: Path) -> Iterator[list[SessionRecorder]]:
    made: list[SessionRecorder] = []
    yield made
    for recorder in made:
        recorder.close()


def record(recorder: SessionRecorder) -> Path:
    session_id = recorder.start_session("alice@example.org")
    for direction, data in TRAFFIC:
        recorder.append_traffic(session_id, direction, data)
    meta = recorder.end_session(session_id, "technician_hangup")
    assert meta.path is not None
    return meta.path


def test_age_opens_the_dek_with_the_local_recording_identity(
    tmp_path: Path, recorders: list[SessionRecorder]
) -> None:
    root = tmp_path / "storage"
    recorders.append(recorder := SessionRecorder(root, "shim-1"))
    path = record(recorder)
    identity = root / "keys" / "recording.agekey"
    result = age_decrypt(dek_file(path, tmp_path / "dek.age"), identity)
    assert result.returncode == 0, result.stderr
    dek = result.stdout
    assert len(dek) == 32
    assert dek == unwrap_dek(verify(path.read_bytes()).header, identity)
    recording = read(path.read_bytes(), dek)
    assert recording.verdict.status is Status.VALID
    assert [(f.direction, f.payload) for f in recording.frames] == TRAFFIC
    # The shim's own identity is not a recipient of its recordings.
    assert age_decrypt(tmp_path / "dek.age", root / "keys" / "shim.agekey").returncode != 0


def test_age_opens_the_dek_for_every_configured_recipient(
    tmp_path: Path, recorders: list[SessionRecorder]
) -> None:
    central, auditor = tmp_path / "central.key", tmp_path / "auditor.key"
    recipients = [age_keygen(central), age_keygen(auditor)]
    root = tmp_path / "storage"
    recorders.append(recorder := SessionRecorder(root, "shim-1", recipients=recipients))
    assert recorder.warnings == []
    path = record(recorder)
    header = verify(path.read_bytes()).header
    assert header["recipients"] == recipients
    ciphertext = dek_file(path, tmp_path / "dek.age")
    deks = []
    for identity in (central, auditor):
        result = age_decrypt(ciphertext, identity)
        assert result.returncode == 0, result.stderr
        assert result.stdout == unwrap_dek(header, identity)  # pyrage reads age-keygen files
        deks.append(result.stdout)
    assert deks[0] == deks[1] and len(deks[0]) == 32
    assert [f.payload for f in read(path.read_bytes(), deks[0]).frames] == [d for _, d in TRAFFIC]
    # With recipients configured no local identity is made, and the shim's
    # own identity cannot open the key: a stolen shim reads nothing.
    assert not (root / "keys" / "recording.agekey").exists()
    assert age_decrypt(ciphertext, root / "keys" / "shim.agekey").returncode != 0
    stranger = tmp_path / "stranger.key"
    age_keygen(stranger)
    assert age_decrypt(ciphertext, stranger).returncode != 0


def test_each_session_has_its_own_dek(tmp_path: Path, recorders: list[SessionRecorder]) -> None:
    root = tmp_path / "storage"
    recorders.append(recorder := SessionRecorder(root, "shim-1"))
    identity = root / "keys" / "recording.agekey"
    deks = set()
    for n in range(3):
        result = age_decrypt(dek_file(record(recorder), tmp_path / f"dek{n}.age"), identity)
        assert result.returncode == 0, result.stderr
        deks.add(result.stdout)
    assert len(deks) == 3
