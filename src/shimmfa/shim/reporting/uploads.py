"""Uploading finished recordings to central, resumably, from a background
thread (central's side: `central/recordings.py` states the protocol).

Rules:
- Only finished recordings go (`sessions/<session_id>_<technician>.shrec`):
  the open session's file is never read, and
  a file is sent only once it verifies locally (`core.recording_reader`,
  with the shim's own key: signed, chained, with its footer). One without
  a footer that is not open (a crash cut it) is `unfinished`: central would
  refuse it; it is looked at again only if it changes.
- Each upload asks central where to resume (`GET .../upload`), then sends
  the bytes from there in chunks of at most 8 MiB (`PUT ...?offset=&size=`),
  so an upload cut by an outage or a restart goes on where central stands.
  409 `offset_mismatch` resumes from the offset central names.
- Central's confirmation (201, or 200 with `complete`) with the file's size
  and SHA-256 makes it `stored`; only then, with
  `recording.delete_after_upload`, is the local file deleted. A refusal
  (422 `recording_invalid`, 409 `recording_exists`, 413) makes it `refused`:
  the file stays, `recording_upload_refused` is raised, it is not retried.
- Other error answers (5xx, 401/403) keep it `ready` and back off: 5 s
  doubling up to an hour, per recording. An unreachable central ends the
  round and delays the next (5 s doubling up to 5 minutes), counting
  against no recording. The state is in the state DB (`state.uploads`).
- Off the relay's path: its own thread, its own state DB connection.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from shimmfa.core.recording_reader import Status, verify
from shimmfa.core.session import valid_session_id
from shimmfa.errors import RecordingError, StateError
from shimmfa.shim.reporting.alerts import Emitter
from shimmfa.shim.reporting.central import Answer, Requester
from shimmfa.shim.reporting.loop import BackgroundLoop
from shimmfa.shim.state.uploads import Upload, UploadLedger, UploadState

__all__ = ["MAX_CHUNK", "RecordingUploader"]

log = logging.getLogger("shimmfa.upload")

MAX_CHUNK = 8 << 20
RETRY_INITIAL = 5.0
RETRY_MAX = 3600.0
_EXPECTED = re.compile(r"expected offset (\d+)")
_REFUSALS = {(422, "recording_invalid"), (409, "recording_exists"), (413, "too_large")}
_DONE = (UploadState.STORED, UploadState.DELETED, UploadState.REFUSED)


class _UnreachableError(Exception):
    pass


class RecordingUploader(BackgroundLoop):
    """See the module rules. `run_once()` is one round over the sessions
    directory; `start()` runs rounds every `poll` seconds until `stop()`."""

    thread_name = "central-upload"

    def __init__(
        self,
        client: Requester,
        ledger: UploadLedger,
        alerts: Emitter,
        *,
        sessions_dir: Path,
        shim_key: bytes,
        open_session: Callable[[], str | None],
        delete_after: bool = False,
        chunk_size: int = MAX_CHUNK,
        poll: float = 5.0,
        clock: Callable[[], float] = time.time,
        retry_initial: float = RETRY_INITIAL,
    ) -> None:
        super().__init__()
        self._client = client
        self._ledger = ledger
        self._alerts = alerts
        self._dir = sessions_dir
        self._key = shim_key
        self._open_session = open_session
        self._delete_after = delete_after
        self._chunk = max(1, min(chunk_size, MAX_CHUNK))
        self._poll = poll
        self._clock = clock
        self._retry_initial = retry_initial
        self.rounds = 0
        self.backoff = 0.0  # after central was unreachable: the wait before the next round
        self._poll_max = max(poll, 300.0)

    # -- a round ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Look at every recording, upload what is due; how many central
        confirmed in this round. Never raises."""
        self.rounds += 1
        confirmed = 0
        try:
            for upload, path in self._scan():
                if self._stopping.is_set():
                    break
                if upload.state is UploadState.READY and upload.next_try <= self._clock():
                    confirmed += self._upload(upload, path)
        except _UnreachableError as exc:
            self.backoff = min(max(self.backoff * 2, self._retry_initial), self._poll_max)
            log.warning("recording upload: %s; next try in %.0f s", exc, self.backoff)
            return confirmed
        except Exception:  # a bug here must not end uploading
            log.exception("recording upload round failed")
        self.backoff = 0.0
        return confirmed

    def _scan(self) -> list[tuple[Upload, Path]]:
        known = self._ledger.all()
        found = []
        for path in sorted(self._dir.glob("*.shrec")):
            sid = path.stem.partition("_")[0]  # <session_id>_<technician>.shrec
            if not valid_session_id(sid) or sid == self._open_session():
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            entry = known.get(sid)
            unchanged = entry is not None and (entry.size, entry.mtime_ns) == (
                stat.st_size,
                stat.st_mtime_ns,
            )
            if entry is not None and entry.state in _DONE:
                if entry.state is UploadState.STORED and self._delete_after and unchanged:
                    self._delete(entry, path)  # stored before a restart cut the deletion
                continue
            if entry is None or not unchanged:
                entry = self._examine(sid, path, stat.st_size, stat.st_mtime_ns)
            found.append((entry, path))
        return found

    def _examine(self, sid: str, path: Path, size: int, mtime_ns: int) -> Upload:
        """Verify the file as central will; `ready` or `unfinished`."""
        now = self._clock()
        try:
            data = path.read_bytes()
            verdict = verify(data, trusted_key=self._key)
            valid = verdict.status is Status.VALID and verdict.header.get("session_id") == sid
            detail = verdict.message
        except (OSError, RecordingError) as exc:
            data, valid, detail = b"", False, f"unreadable: {exc}"
        if valid and len(data) == size:
            upload = Upload(
                sid, UploadState.READY, size, mtime_ns, hashlib.sha256(data).hexdigest()
            )
        else:
            if "tampered" in detail or "unreadable" in detail:
                log.error("recording %s does not verify here (%s): not uploaded", sid, detail)
            upload = Upload(sid, UploadState.UNFINISHED, size, mtime_ns, detail=detail[:300])
        upload = replace(upload, updated_at=now)
        self._ledger.put(upload)
        return upload

    def _upload(self, upload: Upload, path: Path) -> int:
        sid = upload.session_id
        answer = self._ask(f"/recordings/{sid}/upload", "GET")
        if answer.status != 200:
            return self._failed(upload, answer.describe())
        if answer.body.get("complete") is True:
            return self._confirmed(upload, answer, path)
        offset = _offset(answer.body.get("received"), upload.size)
        try:
            with path.open("rb") as handle:
                return self._send(upload, handle.fileno(), offset, path)
        except OSError as exc:
            return self._failed(upload, f"cannot read {path.name}: {exc.strerror or exc}")

    def _send(self, upload: Upload, fd: int, offset: int, path: Path) -> int:
        sid, size = upload.session_id, upload.size
        mismatches = 0
        while not self._stopping.is_set():
            chunk = os.pread(fd, min(self._chunk, size - offset), offset)
            answer = self._ask(
                f"/recordings/{sid}", "PUT", params={"offset": offset, "size": size}, content=chunk
            )
            if answer.status in (200, 201) and answer.body.get("complete") is True:
                return self._confirmed(upload, answer, path)
            if answer.status == 200:
                offset = _offset(answer.body.get("received"), size)
                upload = replace(upload, sent=offset, updated_at=self._clock())
                self._ledger.put(upload)
                continue
            if (answer.status, answer.code) in _REFUSALS:
                return self._refused(upload, answer.code, answer.message)
            if answer.status == 409 and answer.code in ("offset_mismatch", "size_mismatch"):
                mismatches += 1
                if mismatches > 3:
                    return self._failed(upload, answer.describe())
                found = _EXPECTED.search(answer.message)
                offset = _offset(int(found[1]) if found else 0, size)
                log.info("recording %s: central holds %d bytes; resuming there", sid, offset)
                continue
            return self._failed(upload, answer.describe())
        return 0

    def _ask(
        self,
        path: str,
        method: str,
        *,
        params: dict[str, int] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        try:
            return self._client.request(method, path, params=params, content=content)
        except OSError as exc:  # central unreachable: the round ends, nothing is counted
            raise _UnreachableError(str(exc)) from None

    # -- outcomes -----------------------------------------------------------------------

    def _confirmed(self, upload: Upload, answer: Answer, path: Path) -> int:
        sid = upload.session_id
        digest, received = answer.body.get("sha256"), answer.body.get("received")
        if digest != upload.sha256 or received != upload.size:
            return self._refused(
                upload,
                "central_copy_differs",
                f"central holds {received} bytes with SHA-256 {digest}, not this file's "
                f"{upload.size} bytes ({upload.sha256})",
            )
        stored = replace(
            upload, state=UploadState.STORED, sent=upload.size, detail="", updated_at=self._clock()
        )
        self._ledger.put(stored)
        log.info("recording %s uploaded: central verified and stored it (%d bytes)", sid, received)
        self._alerts.emit(
            "recording_uploaded", {"session_id": sid, "bytes": upload.size, "sha256": digest}
        )
        if self._delete_after:
            self._delete(stored, path)
        return 1

    def _delete(self, upload: Upload, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
            fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("recording %s: stored at central, but not deleted here: %s", path.name, exc)
            return
        self._ledger.put(replace(upload, state=UploadState.DELETED, updated_at=self._clock()))
        log.info("recording %s deleted here: central holds it", upload.session_id)

    def _refused(self, upload: Upload, code: str, message: str) -> int:
        sid = upload.session_id
        log.error("recording %s refused by central (%s): %s; kept here", sid, code, message)
        self._ledger.put(
            replace(
                upload,
                state=UploadState.REFUSED,
                detail=f"{code}: {message}"[:300],
                updated_at=self._clock(),
            )
        )
        self._alerts.emit(
            "recording_upload_refused", {"session_id": sid, "reason": code, "detail": message}
        )
        return 0

    def _failed(self, upload: Upload, why: str) -> int:
        failures = upload.failures + 1
        delay = min(self._retry_initial * 2 ** min(failures - 1, 20), RETRY_MAX)
        log.warning(
            "recording %s: upload failed (%s); next try in %.0f s", upload.session_id, why, delay
        )
        try:
            self._ledger.put(
                replace(
                    upload,
                    failures=failures,
                    next_try=self._clock() + delay,
                    detail=why[:300],
                    updated_at=self._clock(),
                )
            )
        except StateError as exc:
            log.error("could not note the failed upload: %s", exc)
        return 0

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.run_once()
            if self._wake.wait(self.backoff or self._poll):
                self._wake.clear()


def _offset(value: object, size: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= size:
        return value
    return 0
