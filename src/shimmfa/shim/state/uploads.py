"""Where each recording's upload to central stands, in the state DB, so an
upload resumes after a restart and a refused one is not sent again.

States of a recording (`<storage.root>/sessions/<session_id>_<technician>.shrec`):
- `ready`: finished (its footer verifies with the shim's key), to upload;
  `sent` is what central last said it holds, `failures`/`next_try` the
  backoff after errors.
- `unfinished`: no footer and not the open session (a crash cut it): never
  uploaded (central would refuse it); looked at again if the file changes.
- `stored`: central verified and stored it (201, or 200 with complete);
  `sha256` is central's digest, equal to the file's.
- `deleted`: stored, and deleted here (`recording.delete_after_upload`).
- `refused`: central refused it (422 `recording_invalid`, 409
  `recording_exists`); kept on the shim, not retried.

Every change is one committed transaction.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from enum import StrEnum
from typing import Any

from shimmfa.shim.state.store import StateStore

__all__ = ["Upload", "UploadLedger", "UploadState"]


class UploadState(StrEnum):
    READY = "ready"
    UNFINISHED = "unfinished"
    STORED = "stored"
    DELETED = "deleted"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Upload:
    session_id: str
    state: UploadState
    size: int
    mtime_ns: int
    sha256: str = ""
    sent: int = 0
    failures: int = 0
    next_try: float = 0.0
    detail: str = ""
    updated_at: float = 0.0


_COLUMNS = "session_id, state, size, mtime_ns, sha256, sent, failures, next_try, detail, updated_at"


def _upload(row: tuple[Any, ...]) -> Upload:
    sid, state, size, mtime, sha, sent, failures, next_try, detail, updated = row
    return Upload(
        str(sid),
        UploadState(str(state)),
        int(size),
        int(mtime),
        str(sha),
        int(sent),
        int(failures),
        float(next_try),
        str(detail),
        float(updated),
    )


class UploadLedger:
    """The `recording_uploads` table of a state DB (thread-safe)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def get(self, session_id: str) -> Upload | None:
        with self._store._lock:
            row = self._store._db.execute(
                f"SELECT {_COLUMNS} FROM recording_uploads WHERE session_id = ?",  # noqa: S608
                (session_id,),
            ).fetchone()
        return _upload(row) if row else None

    def all(self) -> dict[str, Upload]:
        with self._store._lock:
            rows = self._store._db.execute(
                f"SELECT {_COLUMNS} FROM recording_uploads ORDER BY session_id"  # noqa: S608
            ).fetchall()
        return {str(row[0]): _upload(row) for row in rows}

    def put(self, upload: Upload) -> None:
        values = list(astuple(upload))
        values[1] = upload.state.value
        values[8] = upload.detail[:500]
        with self._store._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO recording_uploads ({_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

    def counts(self) -> dict[UploadState, int]:
        with self._store._lock:
            rows = self._store._db.execute(
                "SELECT state, COUNT(*) FROM recording_uploads GROUP BY state"
            ).fetchall()
        return {UploadState(str(state)): int(count) for state, count in rows}
