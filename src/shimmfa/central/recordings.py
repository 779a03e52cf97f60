"""Recording upload: a shim sends each finished `.shrec` file in chunks,
resumably; central verifies the whole file on arrival and keeps it.

The protocol (fixed; the shim side is built against exactly this), as the
shim whose credential it is (another shim's ID: 403 `wrong_shim`):
- `GET .../recordings/{session_id}/upload` -> `{"received", "complete"}`
  (nothing yet: 0, false; stored: the size, true, plus status and sha256).
- `PUT .../recordings/{session_id}?offset=N&size=TOTAL`, the bytes
  `[N, N+len)` as the body (at most `MAX_CHUNK`). N must equal what is
  stored (409 `offset_mismatch` naming the expected offset). While
  incomplete: 200 `{"received", "complete": false}`. When the last byte
  arrives the whole file is checked with `core.recording_reader.verify`
  against the shim's registered Ed25519 key, and must be of this shim and
  this session: valid -> stored, 201 `{"received", "complete": true,
  "status": "valid", "sha256"}`; anything else -> 422 `recording_invalid`
  with the reason (truncated, tampered, another key, another session), the
  partial upload discarded and the refusal audited.
- A PUT for a recording already stored, of the same size, answers 200 with
  the same body as its 201 (idempotent); of another size, 409
  `recording_exists`. A PUT at offset 0 with another size than the upload
  under way starts that upload again.

Storage: `<recordings_dir>/<shim row>/<session_id>.part` while uploading
(each chunk written at its offset and fsync'ed before the database counts
it), renamed to `.shrec` once verified; a `recordings` row per recording
and the session index updated (`sessions.note_recording`), in one
transaction with the `recording_stored` audit event. Directories are 0700,
files 0600.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.problems import Conflict, Forbidden, Invalid, TooLarge
from shimmfa.central.records import record
from shimmfa.central.sessions import note_recording
from shimmfa.central.tables import RecordingRow, RecordingUpload
from shimmfa.core.recording_reader import Status, verify
from shimmfa.core.session import valid_session_id
from shimmfa.errors import RecordingError

__all__ = ["MAX_CHUNK", "UploadState", "put_chunk", "recording_path", "upload_state"]

MAX_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class UploadState:
    received: int
    complete: bool
    status: str | None = None
    sha256: str | None = None

    def answer(self) -> dict[str, object]:
        body: dict[str, object] = {"received": self.received, "complete": self.complete}
        if self.complete:
            body.update(status=self.status, sha256=self.sha256)
        return body


def _check(identity: ShimIdentity, shim_id: str, session_id: str) -> None:
    if shim_id != identity.shim_id:
        raise Forbidden("a shim may upload only its own recordings", "wrong_shim")
    if not valid_session_id(session_id):
        raise Invalid(
            "session_id must look like 20261123T105459.123Z-3f9a1c2b5d7e", "bad_session_id"
        )


def _directory(central: Central, shim_pk: int) -> Path:
    root = central.settings.recordings_dir
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = root / str(shim_pk)
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def recording_path(central: Central, row: RecordingRow) -> Path:
    return central.settings.recordings_dir / row.file_name


def _stored(central: Central, shim_id: str, session_id: str) -> RecordingRow | None:
    with central.sessions() as session:
        return session.scalars(
            select(RecordingRow).where(
                RecordingRow.shim_id == shim_id, RecordingRow.session_id == session_id
            )
        ).first()


def _done(row: RecordingRow) -> UploadState:
    return UploadState(row.bytes, True, row.status, row.sha256)


def upload_state(
    central: Central, identity: ShimIdentity, shim_id: str, session_id: str
) -> UploadState:
    _check(identity, shim_id, session_id)
    stored = _stored(central, shim_id, session_id)
    if stored is not None:
        return _done(stored)
    with central.sessions() as session:
        upload = session.scalars(
            select(RecordingUpload).where(
                RecordingUpload.shim_pk == identity.pk, RecordingUpload.session_id == session_id
            )
        ).first()
    return UploadState(upload.received if upload is not None else 0, False)


def put_chunk(
    central: Central,
    identity: ShimIdentity,
    shim_id: str,
    session_id: str,
    *,
    offset: int,
    size: int,
    data: bytes,
) -> tuple[int, UploadState]:
    """(HTTP status, state) after storing one chunk; see the module rules."""
    _check(identity, shim_id, session_id)
    limit = central.settings.recording_max_bytes
    if not 0 < size <= limit:
        raise TooLarge(f"size must be 1 to {limit} bytes", "too_large")
    if len(data) > MAX_CHUNK:
        raise TooLarge(f"a chunk is at most {MAX_CHUNK} bytes", "too_large")
    if offset < 0 or offset + len(data) > size:
        raise Invalid(f"bytes [{offset}, {offset + len(data)}) lie outside the size {size}")
    stored = _stored(central, shim_id, session_id)
    if stored is not None:
        if stored.bytes != size:
            raise Conflict(
                f"session {session_id} is stored already with {stored.bytes} bytes",
                "recording_exists",
            )
        return 200, _done(stored)
    upload = _claim(central, identity, session_id, offset, size)
    path = _directory(central, identity.pk) / f"{session_id}.part"
    _write(path, offset, data)
    received = offset + len(data)
    with central.sessions.begin() as session:
        moved = session.execute(
            update(RecordingUpload)
            .where(RecordingUpload.id == upload, RecordingUpload.received == offset)
            .values(received=received, updated_at=central.clock())
        )
    if getattr(moved, "rowcount", 0) != 1:
        raise Conflict("another request moved this upload on: ask where it is", "offset_mismatch")
    if received < size:
        return 200, UploadState(received, False)
    return _finish(central, identity, session_id, upload, path)


def _claim(
    central: Central, identity: ShimIdentity, session_id: str, offset: int, size: int
) -> int:
    """The upload row's ID once `offset` is where it stands."""
    now = central.clock()
    with central.sessions.begin() as session:
        upload = session.scalars(
            select(RecordingUpload)
            .where(RecordingUpload.shim_pk == identity.pk, RecordingUpload.session_id == session_id)
            .with_for_update()
        ).first()
        if upload is None:
            upload = RecordingUpload(
                shim_pk=identity.pk, session_id=session_id, size=size, received=0,
                started_at=now, updated_at=now,
            )  # fmt: skip
            session.add(upload)
            session.flush()
        elif upload.size != size and offset == 0:
            upload.size, upload.received, upload.started_at = size, 0, now
        elif upload.size != size:
            raise Conflict(
                f"this upload is of {upload.size} bytes; to start it again send offset 0",
                "size_mismatch",
            )
        if offset != upload.received:
            raise Conflict(
                f"expected offset {upload.received}, not {offset}: send the bytes from "
                f"{upload.received} on",
                "offset_mismatch",
            )
        return upload.id


def _write(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, offset)  # anything past it is from an attempt that was not counted
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse(
    central: Central, identity: ShimIdentity, session_id: str, upload: int, path: Path, why: str
) -> Invalid:
    path.unlink(missing_ok=True)
    now = central.clock()
    with central.sessions.begin() as session:
        session.execute(delete(RecordingUpload).where(RecordingUpload.id == upload))
        record(
            session,
            "recording_rejected",
            now=now,
            shim_id=identity.shim_id,
            fields={"session_id": session_id, "reason": why[:300]},
            forward=central.forward,
        )
    return Invalid(f"recording refused and discarded: {why}", "recording_invalid")


def _finish(
    central: Central, identity: ShimIdentity, session_id: str, upload: int, path: Path
) -> tuple[int, UploadState]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        verdict = verify(data, trusted_key=identity.raw_key)
    except RecordingError as exc:
        raise _refuse(central, identity, session_id, upload, path, str(exc)) from None
    header = verdict.header
    if verdict.status is not Status.VALID:
        raise _refuse(central, identity, session_id, upload, path, verdict.message)
    if header.get("shim_id") != identity.shim_id or header.get("session_id") != session_id:
        why = (
            f"the file is session {header.get('session_id')} of shim {header.get('shim_id')}, "
            f"not session {session_id} of {identity.shim_id}"
        )
        raise _refuse(central, identity, session_id, upload, path, why)
    footer = verdict.footer or {}
    final = path.with_suffix(".shrec")
    os.replace(path, final)
    _fsync_dir(final.parent)
    now = central.clock()
    row = RecordingRow(
        shim_id=identity.shim_id,
        shim_pk=identity.pk,
        session_id=session_id,
        technician_id=str(header.get("technician_id"))[:128],
        started_at=float(header["started_at"]),
        ended_at=_number(footer.get("ended_at")),
        bytes=len(data),
        terminal_reason=_reason(footer.get("terminal_reason")),
        status=verdict.status.value,
        message=verdict.message[:256],
        sha256=digest,
        break_glass=header.get("break_glass") is True,
        received_at=now,
        file_name=f"{identity.pk}/{final.name}",
    )
    try:
        with central.sessions.begin() as session:
            session.add(row)
            session.flush()
            session.execute(delete(RecordingUpload).where(RecordingUpload.id == upload))
            note_recording(session, row)
            record(
                session,
                "recording_stored",
                now=now,
                shim_id=identity.shim_id,
                fields={"session_id": session_id, "recording": row.id, "sha256": digest,
                        "bytes": len(data), "technician_id": row.technician_id},
                forward=central.forward,
            )  # fmt: skip
    except IntegrityError:  # stored meanwhile by a concurrent request
        stored = _stored(central, identity.shim_id, session_id)
        if stored is None:
            raise
        return 200, _done(stored)
    return 201, _done(row)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _reason(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
