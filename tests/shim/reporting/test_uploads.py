"""Recording upload (`shimmfa.shim.reporting.uploads`) against a real
`shimmfa central serve` over TLS, with recordings made by the shim's real
`SessionRecorder` and the real HTTPS client: a finished recording arrives
verified and is kept by default; an upload cut by central going away
resumes, after a restart, from the byte central holds; the local file is
deleted only after central confirmed it (also when central had it
already); a recording central refuses is kept, raises an event and is not
sent again; an unfinished or open recording is never sent."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from central.server import CentralServer
from shim.reporting.central_kit import (
    DEVICE_TEXT,
    ShimSide,
    central_keys,
    central_server,  # noqa: F401 - the module's central, used by name
)
from shimmfa.shim.recorder import SessionRecorder
from shimmfa.shim.reporting.central import Answer, CentralClient, Requester
from shimmfa.shim.reporting.uploads import RecordingUploader
from shimmfa.shim.state.keys import ShimKeys
from shimmfa.shim.state.uploads import UploadLedger, UploadState


class Counting:
    """The real client, with every request central answered noted (and a
    hook after each)."""

    def __init__(self, real: Requester, after: Callable[[int], None] | None = None) -> None:
        self.real = real
        self.after = after or (lambda n: None)
        self.requests: list[tuple[str, str, dict[str, int] | None, int]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        answer = self.real.request(method, path, **kwargs)  # OSError: not answered
        self.requests.append(
            (method, path, kwargs.get("params"), len(kwargs.get("content") or b""))
        )
        self.after(len(self.requests))
        return answer

    @property
    def sent(self) -> int:
        return sum(size for method, _, _, size in self.requests if method == "PUT")


@pytest.fixture
def side(tmp_path: Path, central_server: CentralServer) -> Iterator[ShimSide]:  # noqa: F811
    made = ShimSide(tmp_path / "shim", central_server, f"shim-{secrets.token_hex(4)}")
    yield made
    made.close()


def uploader(
    side: ShimSide,
    client: Requester,
    *,
    open_session: Callable[[], str | None] = lambda: None,
    delete_after: bool = False,
    chunk_size: int = 1 << 20,
    shim_key: bytes | None = None,
) -> RecordingUploader:
    return RecordingUploader(
        client,
        UploadLedger(side.store),
        side.alerts,
        sessions_dir=side.root / "sessions",
        shim_key=shim_key or side.keys.public_key_raw,
        open_session=open_session,
        delete_after=delete_after,
        chunk_size=chunk_size,
    )


def stored_at_central(side: ShimSide, session_id: str) -> dict[str, Any] | None:
    with side.server.client() as client:
        items = client.get("/api/v1/recordings", params={"limit": 200}).json()["items"]
    return next((i for i in items if i["session_id"] == session_id), None)


def state(side: ShimSide, session_id: str) -> UploadState | None:
    entry = UploadLedger(side.store).get(session_id)
    return entry.state if entry is not None else None


def test_a_finished_recording_is_uploaded_verified_and_kept_by_default(side: ShimSide) -> None:
    session_id = side.record()
    data = side.recording(session_id).read_bytes()
    client = Counting(side.client)
    assert uploader(side, client).run_once() == 1
    row = stored_at_central(side, session_id)
    assert row is not None and row["status"] == "valid"
    assert row["technician_id"] == "ada@vendor"
    assert state(side, session_id) is UploadState.STORED
    (event,) = side.events("recording_uploaded")
    assert event.fields["sha256"] == hashlib.sha256(data).hexdigest()
    assert side.recording(session_id).read_bytes() == data  # kept: delete_after_upload is off
    before = len(client.requests)
    assert uploader(side, client).run_once() == 0  # done: not asked about again
    assert len(client.requests) == before


def test_an_interrupted_upload_resumes_where_central_stands_and_deletes_after_confirmation(
    side: ShimSide,
) -> None:
    output = b"".join(b"log line %06d: pressure nominal\r\n" % n for n in range(3000))
    session_id = side.record(output=output)
    path = side.recording(session_id)
    size = path.stat().st_size
    chunk = 16 << 10
    assert size > 3 * chunk

    def central_goes_away(count: int) -> None:
        if count == 2:  # the status question, then the first chunk: then the outage
            side.server.stop()

    first = Counting(side.client, central_goes_away)
    try:
        assert uploader(side, first, delete_after=True, chunk_size=chunk).run_once() == 0
    finally:
        side.server.start()
    assert first.sent == chunk
    entry = UploadLedger(side.store).get(session_id)
    assert entry is not None and (entry.state, entry.sent) == (UploadState.READY, chunk)
    assert path.exists()  # not confirmed: kept
    assert side.events("recording_uploaded") == []

    # the daemon restarted: a new uploader and client over the same state DB
    restarted = CentralClient(side.settings.central, side.shim_id)
    again = Counting(restarted)
    try:
        assert uploader(side, again, delete_after=True, chunk_size=chunk).run_once() == 1
    finally:
        restarted.close()
    puts = [params for method, _, params, _ in again.requests if method == "PUT"]
    assert puts[0] == {"offset": chunk, "size": size}  # resumed, not restarted
    assert again.sent == size - chunk
    row = stored_at_central(side, session_id)
    assert row is not None and row["status"] == "valid" and row["bytes"] == size
    assert not path.exists()  # deleted once central confirmed it
    assert state(side, session_id) is UploadState.DELETED


def test_a_recording_central_holds_already_is_confirmed_and_then_deleted(side: ShimSide) -> None:
    session_id = side.record()
    path = side.recording(session_id)
    data = path.read_bytes()
    answer = side.client.request(
        "PUT", f"/recordings/{session_id}", params={"offset": 0, "size": len(data)}, content=data
    )
    assert answer.status == 201  # stored by an earlier run the shim did not note
    client = Counting(side.client)
    assert uploader(side, client, delete_after=True).run_once() == 1
    assert client.sent == 0  # nothing sent again
    assert not path.exists() and state(side, session_id) is UploadState.DELETED


def test_a_recording_central_refuses_is_kept_raises_an_event_and_is_not_sent_again(
    side: ShimSide,
) -> None:
    # the shim's key was made anew but central still has the old one
    replaced = ShimKeys(Ed25519PrivateKey.generate(), x25519.Identity.generate(), side.root / "k")
    recipients = [central_keys(side.server).recording_recipient]
    recorder = SessionRecorder(side.root, side.shim_id, keys=replaced, recipients=recipients)
    try:
        session_id = recorder.start_session("ada@vendor")
        recorder.append_traffic(session_id, "out", DEVICE_TEXT)  # type: ignore[arg-type]
        recorder.end_session(session_id, "technician_hangup")
    finally:
        recorder.close()
    client = Counting(side.client)
    assert (
        uploader(side, client, delete_after=True, shim_key=replaced.public_key_raw).run_once() == 0
    )
    assert state(side, session_id) is UploadState.REFUSED
    (event,) = side.events("recording_upload_refused")
    assert event.fields["reason"] == "recording_invalid"
    assert "different shim key" in str(event.fields["detail"])
    assert side.recording(session_id).exists()  # kept for the auditors
    assert stored_at_central(side, session_id) is None
    before = len(client.requests)
    uploader(side, client, delete_after=True, shim_key=replaced.public_key_raw).run_once()
    assert len(client.requests) == before  # not retried


def test_unfinished_and_open_recordings_are_never_sent(side: ShimSide) -> None:
    cut_id = side.record()
    cut = side.recording(cut_id)
    cut.write_bytes(cut.read_bytes()[:-40])  # a crash cut its footer
    recorder = SessionRecorder(
        side.root,
        side.shim_id,
        keys=side.keys,
        recipients=[central_keys(side.server).recording_recipient],
    )
    try:
        open_id = recorder.start_session("ada@vendor")
        recorder.append_traffic(open_id, "out", DEVICE_TEXT)  # type: ignore[arg-type]
        client = Counting(side.client)
        assert uploader(side, client, open_session=lambda: open_id).run_once() == 0
        assert client.requests == []
        assert state(side, cut_id) is UploadState.UNFINISHED
        assert state(side, open_id) is None  # never even read
        recorder.end_session(open_id, "technician_hangup")
    finally:
        recorder.close()
    assert uploader(side, client).run_once() == 1  # once finished, it goes
    assert state(side, open_id) is UploadState.STORED
    assert [path for _, path, _, _ in client.requests if cut_id in path] == []
