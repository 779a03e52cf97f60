"""Reading stored recordings: their list, and playback and export, which
decrypt with central's recording identity.

Rules:
- Only the `auditor` and `infosec` roles play back or export
  (`api.deps.PLAYERS`; `require` checks it before anything is read).
- Decryption happens in memory only (`core.recording_export.decrypt`);
  nothing decrypted is written to disk or logged.
- Before decrypting, the stored file must still have the SHA-256 it had
  when it was verified on arrival, and it is verified again (against the
  shim's registered key while the shim is registered): a file altered at
  rest is refused (409 `recording_altered`), never played.
- Every playback and export is an audited event (`recording_played`,
  `recording_exported`: who, which recording, which form), committed
  before the content is returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from shimmfa.central.context import Central
from shimmfa.central.credentials import parse_public_key
from shimmfa.central.models import ShimRow
from shimmfa.central.problems import Conflict, Invalid, NotFound
from shimmfa.central.recordings import recording_path
from shimmfa.central.records import record
from shimmfa.central.tables import RecordingRow
from shimmfa.core.recording_export import asciicast_lines, decrypt, jsonl_lines, raw_bytes
from shimmfa.core.recording_reader import Recording
from shimmfa.errors import RecordingError, WrongIdentityError

__all__ = [
    "EXPORT_FORMATS",
    "Export",
    "asciicast",
    "export",
    "get_recording",
    "list_recordings",
]

EXPORT_FORMATS = ("jsonl", "raw", "shrec")


@dataclass(frozen=True, slots=True)
class Export:
    content: bytes
    media_type: str
    filename: str


def get_recording(central: Central, recording_id: int) -> RecordingRow:
    with central.sessions() as session:
        row = session.get(RecordingRow, recording_id)
    if row is None:
        raise NotFound(f"no recording {recording_id}")
    return row


def list_recordings(
    central: Central,
    *,
    shim_id: str | None = None,
    technician_id: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Sequence[RecordingRow]:
    query = select(RecordingRow).order_by(RecordingRow.id.desc()).limit(limit)
    if shim_id:
        query = query.where(RecordingRow.shim_id == shim_id)
    if technician_id:
        query = query.where(RecordingRow.technician_id == technician_id)
    if before is not None:
        query = query.where(RecordingRow.id < before)
    with central.sessions() as session:
        return session.scalars(query).all()


def _stored_bytes(central: Central, row: RecordingRow) -> bytes:
    try:
        data = recording_path(central, row).read_bytes()
    except OSError:
        raise Conflict(
            f"the file of recording {row.id} is missing from the recordings directory",
            "recording_missing",
        ) from None
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise Conflict(
            f"the file of recording {row.id} changed since it was verified; it is not played",
            "recording_altered",
        )
    return data


def _trusted_key(central: Central, row: RecordingRow) -> bytes | None:
    if row.shim_pk is None:
        return None  # the shim was removed; the SHA-256 still ties it to what was verified
    with central.sessions() as session:
        text = session.scalar(select(ShimRow.public_key).where(ShimRow.pk == row.shim_pk))
    return parse_public_key(text) if text else None


def _decrypted(central: Central, row: RecordingRow) -> Recording:
    data = _stored_bytes(central, row)
    identity = central.keys.recording
    try:
        return decrypt(data, [identity], _trusted_key(central, row), who="central's identity")
    except WrongIdentityError:
        raise Conflict(
            f"recording {row.id} was not encrypted to central's recording recipient "
            f"({central.keys.recording_recipient}); only its auditors' keys open it",
            "not_for_central",
        ) from None
    except RecordingError as exc:
        raise Invalid(f"recording {row.id} does not verify: {exc}", "recording_invalid") from None


def _audit(central: Central, kind: str, row: RecordingRow, actor: str, form: str) -> None:
    now = central.clock()
    with central.sessions.begin() as session:
        record(
            session,
            kind,
            now=now,
            shim_id=row.shim_id,
            fields={
                "by": actor,
                "recording": row.id,
                "session_id": row.session_id,
                "technician_id": row.technician_id,
                "format": form,
            },
            forward=central.forward,
        )


def asciicast(central: Central, recording_id: int, *, actor: str) -> str:
    """The recording as asciicast v2 text, for asciinema-player (audited)."""
    row = get_recording(central, recording_id)
    recording = _decrypted(central, row)
    text = "\n".join(asciicast_lines(recording)) + "\n"
    _audit(central, "recording_played", row, actor, "asciicast")
    return text


def export(central: Central, recording_id: int, form: str, *, actor: str) -> Export:
    """The recording as JSON lines, the device's raw output, or the signed
    `.shrec` file itself (audited)."""
    if form not in EXPORT_FORMATS:
        raise Invalid(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    row = get_recording(central, recording_id)
    base = f"{row.shim_id}_{row.session_id}".replace("/", "_")
    if form == "shrec":
        content = _stored_bytes(central, row)
        result = Export(content, "application/octet-stream", f"{base}.shrec")
    else:
        recording = _decrypted(central, row)
        if form == "jsonl":
            text = "".join(line + "\n" for line in jsonl_lines(recording))
            result = Export(text.encode("utf-8"), "application/x-ndjson", f"{base}.jsonl")
        else:
            content = b"".join(raw_bytes(recording, "out"))
            result = Export(content, "application/octet-stream", f"{base}.out.raw")
    _audit(central, "recording_exported", row, actor, form)
    return result
