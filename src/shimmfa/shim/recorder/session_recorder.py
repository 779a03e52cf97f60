"""Writes session recordings (`<storage.root>/sessions/*.shrec`).

Rules:
- The relay's path costs one deque append per chunk (`record()`): a writer
  thread seals what arrived into frames every `POLL` seconds and, every
  `fsync_interval`, writes a signed checkpoint and fsyncs. After a crash every
  frame up to the last checkpoint verifies.
- A footer is written on every end of a session (`end_session`, whatever the
  reason); the DEK is dropped with it. After a write error nothing more is
  written: the file stays truncated at its last checkpoint, not "tampered".
- One session at a time; calls out of order raise `SessionStateError`
  (a RuntimeError, as in the seed).
- A session that reaches `max_bytes` is ended by the relay (`size_limit`,
  reported through `on_problem`); a write error reports `recording_failed`.
  New sessions are refused (`StorageExhaustedError`) while the disk has a
  problem (`storage.RecordingStorage`: the budget is used, free space is
  short, or the disk was found full). Nothing is deleted.
- File names are the session ID plus a sanitised technician ID.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pyrage

from shimmfa import __version__
from shimmfa.core.recording import Direction, Header, RecordingEncoder, canonical_json, iso_utc
from shimmfa.core.session import new_session_id
from shimmfa.errors import RecordingError, SessionStateError
from shimmfa.shim.recorder.session_file import (
    MAX_FRAME_PAYLOAD,
    PACKED,
    SessionFile,
    SessionMeta,
    fsync_dir,
)
from shimmfa.shim.recorder.storage import RecordingStorage
from shimmfa.shim.state.keys import ShimKeys, init_keys, local_recording_recipient, parse_recipient

__all__ = [
    "MAX_FRAME_PAYLOAD",
    "POLL",
    "SUFFIX",
    "Direction",
    "SessionMeta",
    "SessionRecorder",
    "SiemTransport",
    "StorageExhaustedError",
    "safe_name",
]

log = logging.getLogger("shimmfa.recorder")

POLL = 0.05
SUFFIX = ".shrec"


class SiemTransport(Protocol):
    def forward(self, record: dict[str, Any]) -> bool: ...


class StorageExhaustedError(RecordingError):
    """No room for another recording."""


def safe_name(technician_id: str) -> str:
    """A technician ID as a harmless file-name fragment."""
    cleaned = re.sub(r"[^A-Za-z0-9@._+-]", "_", technician_id)[:64]
    return cleaned.lstrip(".") or "_"


class SessionRecorder:
    def __init__(
        self,
        storage_root: str | Path,
        shim_id: str,
        siem: SiemTransport | None = None,
        *,
        keys: ShimKeys | None = None,
        recipients: list[str] | None = None,
        fsync_interval: float = 1.0,
        max_bytes: int = 1 << 30,
        budget_bytes: int = 4 << 30,
        min_free_bytes: int = 0,
        on_problem: Callable[[str], None] | None = None,
        background: bool = True,
    ) -> None:
        self._root = Path(storage_root)
        self._dir = self._root / "sessions"
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._shim_id = shim_id
        self._siem = siem
        self._keys = keys if keys is not None else init_keys(self._root)[0]
        self.warnings: list[str] = []
        if recipients:
            self._recipients = [parse_recipient(text) for text in recipients]
            self._recipient_texts = list(recipients)
        else:
            text, secret_here = local_recording_recipient(self._root)
            self._recipients = [parse_recipient(text)]
            self._recipient_texts = [text]
            if secret_here:
                self.warnings.append(
                    "recordings are encrypted to a local identity whose secret key "
                    f"{self._root / 'keys' / 'recording.agekey'} is still on the shim: move it "
                    "to the auditors' custody (or set recording.recipients), or a stolen shim "
                    "can read past sessions"
                )
        self._fsync_interval = fsync_interval
        self._max_bytes = max_bytes
        self._on_problem = on_problem or (lambda reason: None)
        self._storage = RecordingStorage(self._dir, SUFFIX, budget_bytes, min_free_bytes)
        self._open: SessionFile | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        if background:  # else the owner calls service() regularly (the recorder process)
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    @property
    def sessions_dir(self) -> Path:
        return self._dir

    @property
    def open_session_id(self) -> str | None:
        session = self._open
        return session.meta.session_id if session is not None else None

    @property
    def has_open_session(self) -> bool:
        return self._open is not None

    def storage_problem(self) -> str | None:
        """Why a new session cannot be recorded now, or None."""
        return self._storage.problem()

    # -- session lifecycle ------------------------------------------------------

    def start_session(self, technician_id: str, *, extra: dict[str, Any] | None = None) -> str:
        problem = self.storage_problem()
        if problem:
            raise StorageExhaustedError(f"Storage exhausted: {problem}")
        with self._lock:
            if self._open is not None:
                raise SessionStateError(f"session {self._open.meta.session_id} already open")
            now = time.time()
            session_id = new_session_id(now, os.urandom(6))
            path = self._dir / f"{session_id}_{safe_name(technician_id)}{SUFFIX}"
            dek = os.urandom(32)
            header = Header(
                session_id=session_id,
                shim_id=self._shim_id,
                technician_id=technician_id,
                started_at=now,
                signing_key=self._keys.public_key_text,
                recipients=tuple(self._recipient_texts),
                encrypted_dek=pyrage.encrypt(dek, self._recipients),
                extra={"started_at_iso": iso_utc(now), "software": f"shimmfa {__version__}"}
                | (extra or {}),
            )
            encoder = RecordingEncoder(header, dek, self._keys.sign)
            del dek
            meta = SessionMeta(session_id, technician_id, self._shim_id, now, path=path)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                session = SessionFile(meta, encoder, fd, self._storage)
                try:
                    session.write(encoder.header_record)
                    os.fsync(fd)
                    fsync_dir(self._dir)
                except OSError:
                    os.close(fd)
                    path.unlink(missing_ok=True)
                    raise
            except OSError as exc:
                self._storage.write_failed(exc)
                raise StorageExhaustedError(
                    f"Storage exhausted: cannot write {path}: {exc}"
                ) from exc
            self._open = session
        self._forward(
            {
                "event": "session_start",
                "type": "session_header",
                "session_id": session_id,
                "technician_id": technician_id,
                "shim_id": self._shim_id,
                "started_at_epoch": now,
                "started_at_iso": iso_utc(now),
                "version": "1.0",
            }
        )
        log.info("recording session %s to %s", session_id, path.name)
        return session_id

    def record(self, direction: str, data: bytes) -> None:
        """The relay's path: queue one chunk of the open session."""
        session = self._open
        if session is None:
            return
        self.record_at(direction, data, time.monotonic() - session.mono0, time.time())

    def record_at(self, direction: str, data: bytes, monotonic: float, wall: float) -> None:
        """Queue a chunk stamped by the caller (seconds since the session
        started, wall-clock time): the recorder process's entry point."""
        session = self._open
        if session is None:
            return
        if len(data) <= MAX_FRAME_PAYLOAD:
            session.queue.append((direction, monotonic, wall, data))
        else:  # no frame may outgrow a record (MAX_RECORD): cut it into entries
            for start in range(0, len(data), MAX_FRAME_PAYLOAD):
                session.queue.append(
                    (direction, monotonic, wall, data[start : start + MAX_FRAME_PAYLOAD])
                )
        session.size += len(data)
        if session.size > self._max_bytes and not session.limit_reported:
            session.limit_reported = True
            self._on_problem("size_limit")

    def record_packed(
        self, block: bytes | memoryview, bytes_in: int, bytes_out: int, last_wall: float
    ) -> None:
        """Queue whole ENTRY-packed entries as one frame (the recorder
        process's path: it never unpacks what the relay packed)."""
        session = self._open
        if session is None:
            return
        session.queue.append((PACKED, bytes_in, bytes_out, last_wall, block))  # type: ignore[arg-type]
        session.size += len(block)

    def append_traffic(self, session_id: str, direction: Direction, chunk: bytes) -> None:
        self._require(session_id)
        # Check here, not in the writer thread: an unknown direction there
        # fails the whole recording, and the string "meta" is not `is` META.
        direction = Direction(direction)
        if direction is Direction.META:
            raise SessionStateError("use append_event for meta records")
        self.record(direction, bytes(chunk))

    def append_event(self, session_id: str, event: dict[str, Any]) -> None:
        session = self._require(session_id)
        record = {"type": "meta", "epoch": time.time(), **event}
        session.queue.append(
            (
                Direction.META,
                time.monotonic() - session.mono0,
                record["epoch"],
                canonical_json(record),
            )
        )
        self._forward({"session_id": session_id, **record})

    def end_session(self, session_id: str, reason: str) -> SessionMeta:
        with self._lock:
            session = self._require(session_id)
            self._open = None
            meta = session.meta
            meta.ended_at = time.time()
            meta.terminal_reason = reason
            try:
                if session.failed:
                    # A frame the encoder sealed never (fully) reached the disk:
                    # a footer would sign its head, and the file would verify as
                    # tampered. Leave it truncated at its last checkpoint.
                    log.error("recording %s left truncated after a write error", session_id)
                else:
                    session.drain()
                    session.write(session.encoder.footer(meta.ended_at, meta.started_at, reason))
                    os.fsync(session.fd)
            except OSError as exc:
                self._storage.write_failed(exc)
                log.error("could not finish recording %s: %s", session_id, exc)
            finally:
                session.encoder.forget()
                os.close(session.fd)
            meta.bytes_inbound = session.encoder.bytes_in
            meta.bytes_outbound = session.encoder.bytes_out
        self._forward(
            {
                "event": "session_end",
                "session_id": session_id,
                "technician_id": meta.technician_id,
                "shim_id": meta.shim_id,
                "duration_seconds": meta.ended_at - meta.started_at,
                "bytes_inbound": meta.bytes_inbound,
                "bytes_outbound": meta.bytes_outbound,
                "terminal_reason": reason,
            }
        )
        log.info(
            "recording of %s closed: reason=%s in=%d out=%d",
            session_id,
            reason,
            meta.bytes_inbound,
            meta.bytes_outbound,
        )
        return meta

    def force_close_on_emergency(self, reason: str) -> SessionMeta | None:
        session = self._open
        if session is None:
            return None
        return self.end_session(session.meta.session_id, reason)

    def close(self) -> None:
        """End any open session (reason `shutdown`) and stop the writer."""
        self.force_close_on_emergency("shutdown")
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- internals ----------------------------------------------------------------

    def _require(self, session_id: str) -> SessionFile:
        session = self._open
        if session is None or session.meta.session_id != session_id:
            raise SessionStateError(f"session {session_id} is not open")
        return session

    def _forward(self, record: dict[str, Any]) -> None:
        if self._siem is None:
            return
        try:
            self._siem.forward(record)
        except Exception as exc:  # the SIEM never breaks recording
            log.warning("SIEM transport failed: %s", exc)

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(POLL)
            self.service()

    def service(self) -> None:
        """Seal and write what is queued; checkpoint and fsync when due. The
        writer thread calls it every POLL seconds; without one, the owner."""
        with self._lock:
            session = self._open
            if session is None or session.failed:
                return
            try:
                session.drain()
                due = time.monotonic() - session.last_sync >= self._fsync_interval
                if session.unsynced and due:
                    session.sync()
            except Exception as exc:
                session.failed = True
                self._storage.write_failed(exc)
                log.error("recording %s failed: %s", session.meta.session_id, exc)
                self._on_problem("recording_failed")
