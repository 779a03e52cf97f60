"""Recording upload, playback and the session index (SQLite and
PostgreSQL), with real recordings from the shim's `SessionRecorder`:
resumable chunks, a wrong offset told where to resume, the whole file
verified on arrival (truncated, tampered, another key, another session are
refused with the reason and discarded), idempotent; playback decrypted in
memory for auditor and infosec only, every playback and export audited; a
file altered at rest is not played."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyrage import x25519

from central.conftest import auth
from central.kit import SimShim
from central.recording_kit import DEVICE_TEXT, make_recording, upload
from shimmfa.central.context import Central


@pytest.fixture
def recorded(tmp_path: Path, central: Central, shim: SimShim) -> tuple[str, bytes]:
    return make_recording(tmp_path / "shim", shim, [central.keys.recording_recipient])


def state(client: TestClient, sim: SimShim, session_id: str) -> dict[str, Any]:
    url = f"/api/v1/shims/{sim.shim_id}/recordings/{session_id}/upload"
    answer = client.get(url, headers=sim.auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def events(client: TestClient, headers: dict[str, str], kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        "/api/v1/events", params={"kind": kind}, headers=headers
    ).json()["items"]
    return items


def test_a_resumable_upload_is_verified_stored_and_idempotent(
    client: TestClient, central: Central, shim: SimShim, recorded: tuple[str, bytes],
    admin: dict[str, str],
) -> None:  # fmt: skip
    session_id, data = recorded
    url = f"/api/v1/shims/shim-a/recordings/{session_id}"
    assert state(client, shim, session_id) == {"received": 0, "complete": False}
    half = len(data) // 2
    first = client.put(url, params={"offset": 0, "size": len(data)}, content=data[:half],
                       headers=shim.auth)  # fmt: skip
    assert (first.status_code, first.json()) == (200, {"received": half, "complete": False})
    assert state(client, shim, session_id)["received"] == half
    wrong = client.put(url, params={"offset": 0, "size": len(data)}, content=data[:half],
                       headers=shim.auth)  # fmt: skip
    assert (wrong.status_code, wrong.json()["code"]) == (409, "offset_mismatch")
    assert f"expected offset {half}" in wrong.json()["message"]
    last = client.put(url, params={"offset": half, "size": len(data)}, content=data[half:],
                      headers=shim.auth)  # fmt: skip
    digest = hashlib.sha256(data).hexdigest()
    done = {"received": len(data), "complete": True, "status": "valid", "sha256": digest}
    assert (last.status_code, last.json()) == (201, done)
    again = upload(client, shim, session_id, data)
    assert (again.status_code, again.json()) == (200, done)
    assert state(client, shim, session_id) == done
    stored = list(central.settings.recordings_dir.rglob("*.shrec"))
    assert [p.read_bytes() for p in stored] == [data]
    assert stored[0].stat().st_mode & 0o077 == 0
    assert central.settings.recordings_dir.stat().st_mode & 0o077 == 0
    row = client.get("/api/v1/recordings", headers=admin).json()["items"][0]
    assert (row["session_id"], row["technician_id"], row["terminal_reason"]) == (
        session_id, "tech-1", "technician_hangup",
    )  # fmt: skip
    assert events(client, admin, "recording_stored")[0]["fields"]["sha256"] == digest


def cut(data: bytes) -> bytes:
    return data[: len(data) - 40]


def flip(data: bytes) -> bytes:
    """One bit changed in the first frame after the (signed) header."""
    at = 8 + 5 + int.from_bytes(data[9:13], "big") + 10
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("change", "reason"),
    [(cut, "truncated"), (flip, "tampered"), (lambda d: b"not a recording", "")],
    ids=["truncated", "tampered", "garbage"],
)
def test_a_recording_that_fails_verification_is_refused_and_discarded(
    client: TestClient, central: Central, shim: SimShim, recorded: tuple[str, bytes],
    admin: dict[str, str], change: Any, reason: str,
) -> None:  # fmt: skip
    session_id, data = recorded
    answer = upload(client, shim, session_id, change(data), chunk=500)
    assert (answer.status_code, answer.json()["code"]) == (422, "recording_invalid")
    assert answer.json()["message"].startswith("recording refused and discarded: ")
    assert reason in answer.json()["message"]
    assert state(client, shim, session_id) == {"received": 0, "complete": False}
    assert list(central.settings.recordings_dir.rglob("*.*")) == []
    assert events(client, admin, "recording_rejected")[0]["fields"]["session_id"] == session_id
    assert upload(client, shim, session_id, data).status_code == 201  # the real one still goes


def test_a_recording_signed_by_another_key_or_of_another_session_is_refused(
    tmp_path: Path, client: TestClient, central: Central, shim: SimShim,
    recorded: tuple[str, bytes],
) -> None:  # fmt: skip
    impostor = SimShim("shim-a")  # same ID, another key
    other_id, other = make_recording(tmp_path / "x", impostor, [central.keys.recording_recipient])
    answer = upload(client, shim, other_id, other)
    assert answer.status_code == 422
    assert "different shim key" in answer.json()["message"]
    session_id, data = recorded
    swapped = upload(client, shim, other_id if other_id != session_id else "x", data)
    assert swapped.status_code == 422 and "not session" in swapped.json()["message"]


def test_uploads_are_the_shims_own(
    client: TestClient, admin: dict[str, str], shim: SimShim, recorded: tuple[str, bytes]
) -> None:
    session_id, data = recorded
    other = SimShim("shim-o")
    made = client.post("/api/v1/shims", json=other.registration(), headers=admin)
    other.credential = made.json()["credential"]
    url = f"/api/v1/shims/shim-a/recordings/{session_id}"
    wrong = client.put(url, params={"offset": 0, "size": len(data)}, content=data,
                       headers=other.auth)  # fmt: skip
    assert (wrong.status_code, wrong.json()["code"]) == (403, "wrong_shim")
    assert client.put(url, params={"offset": 0, "size": 9}, content=b"x",
                      headers=admin).status_code == 401  # fmt: skip
    bad = client.get("/api/v1/shims/shim-a/recordings/..%2f..%2fetc/upload", headers=shim.auth)
    assert bad.status_code in (404, 422)
    bad_id = client.put(
        "/api/v1/shims/shim-a/recordings/not-a-session",
        params={"offset": 0, "size": 1},
        content=b"x",
        headers=shim.auth,
    )
    assert (bad_id.status_code, bad_id.json()["code"]) == (422, "bad_session_id")
    beyond = client.put(url, params={"offset": 0, "size": 2}, content=b"xyz", headers=shim.auth)
    assert beyond.status_code == 422


def test_playback_is_for_auditor_and_infosec_only_and_audited(
    client: TestClient, central: Central, shim: SimShim, recorded: tuple[str, bytes],
    tokens: dict[str, str], admin: dict[str, str],
) -> None:  # fmt: skip
    session_id, data = recorded
    assert upload(client, shim, session_id, data).status_code == 201
    rid = client.get("/api/v1/recordings", headers=admin).json()["items"][0]["id"]
    cast = f"/api/v1/recordings/{rid}/asciicast"
    for role in ("admin", "clinical_engineering"):
        refused = client.get(cast, headers=auth(tokens[role]))
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        assert client.get(f"/api/v1/recordings/{rid}/export", headers=auth(tokens[role])
                          ).status_code == 403  # fmt: skip
    assert events(client, admin, "recording_played") == []
    answer = client.get(cast, headers=auth(tokens["auditor"]))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-asciicast")
    lines = answer.text.splitlines()
    assert json.loads(lines[0])["version"] == 2
    output = "".join(e[2] for e in map(json.loads, lines[1:]) if e[1] == "o")
    assert output == DEVICE_TEXT.decode()
    played = events(client, admin, "recording_played")
    assert played[0]["fields"]["by"] == "token:auditor-token"
    assert played[0]["fields"]["recording"] == rid
    infosec = auth(tokens["infosec"])
    for form, check in [
        ("jsonl", lambda b: b"session_footer" in b),
        ("raw", lambda b: b == DEVICE_TEXT),
        ("shrec", lambda b: b == data),
    ]:
        got = client.get(f"/api/v1/recordings/{rid}/export", params={"format": form},
                         headers=infosec)  # fmt: skip
        assert got.status_code == 200 and check(got.content), form
        assert "attachment" in got.headers["content-disposition"]
    assert [e["fields"]["format"] for e in events(client, admin, "recording_exported")] == [
        "jsonl", "raw", "shrec",
    ]  # fmt: skip


def test_a_file_altered_at_rest_is_not_played(
    client: TestClient, central: Central, shim: SimShim, recorded: tuple[str, bytes],
    tokens: dict[str, str],
) -> None:  # fmt: skip
    session_id, data = recorded
    upload(client, shim, session_id, data)
    (path,) = central.settings.recordings_dir.rglob("*.shrec")
    path.write_bytes(flip(data))
    answer = client.get("/api/v1/recordings/1/asciicast", headers=auth(tokens["auditor"]))
    assert (answer.status_code, answer.json()["code"]) == (409, "recording_altered")


def test_a_recording_not_for_central_is_stored_but_not_played(
    tmp_path: Path, client: TestClient, shim: SimShim, tokens: dict[str, str]
) -> None:
    auditor_only = [str(x25519.Identity.generate().to_public())]
    session_id, data = make_recording(tmp_path / "s", shim, auditor_only)
    assert upload(client, shim, session_id, data).status_code == 201
    answer = client.get("/api/v1/recordings/1/asciicast", headers=auth(tokens["auditor"]))
    assert (answer.status_code, answer.json()["code"]) == (409, "not_for_central")


def test_the_session_list_joins_events_and_recordings(
    client: TestClient, shim: SimShim, recorded: tuple[str, bytes], admin: dict[str, str]
) -> None:
    session_id, data = recorded
    batch = [
        shim.event("session_start", session_id=session_id, technician_id="tech-1"),
        shim.event(
            "session_start",
            session_id="20260101T000000.000Z-000000000001",
            technician_id="tech-2",
            break_glass=True,
        ),  # fmt: skip
        shim.event(
            "session_end",
            session_id="20260101T000000.000Z-000000000001",
            terminal_reason="idle_timeout",
        ),  # fmt: skip
    ]
    assert (
        client.post("/api/v1/events", json={"events": batch}, headers=shim.auth).status_code == 200
    )
    upload(client, shim, session_id, data)
    items = client.get("/api/v1/sessions", headers=admin).json()["items"]
    assert {(i["session_id"], i["verification"]) for i in items} == {
        (session_id, "valid"), ("20260101T000000.000Z-000000000001", "not_uploaded"),
    }  # fmt: skip
    mine = next(i for i in items if i["session_id"] == session_id)
    assert mine["terminal_reason"] == "technician_hangup" and mine["recording"]["id"] == 1

    def ids(**params: Any) -> list[str]:
        found = client.get("/api/v1/sessions", params=params, headers=admin).json()["items"]
        return [i["session_id"] for i in found]

    assert ids(technician_id="tech-2") == ["20260101T000000.000Z-000000000001"]
    assert ids(break_glass=True) == ["20260101T000000.000Z-000000000001"]
    assert ids(terminal_reason="technician_hangup") == [session_id]
    assert ids(recorded=True) == [session_id]
    assert ids(shim_id="shim-z") == []
    assert ids(since="2030-01-01T00:00:00Z") == []
    page = client.get("/api/v1/sessions", params={"limit": 1}, headers=admin).json()
    rest = client.get("/api/v1/sessions", params={"cursor": page["next_cursor"]}, headers=admin)
    assert len(page["items"]) == 1 and len(rest.json()["items"]) == 1
