"""The daemon's recorder, in a process of its own.

Sealing and writing a recording (ChaCha20-Poly1305, SHA-256, writes, fsync)
in a thread of the relay's process slowed the wire by a third: the relay
thread kept waiting for the interpreter lock. `RecorderProcess` runs a
`SessionRecorder` in a child process instead; the relay's only cost per
chunk is one `writev` to a pipe.

Rules:
- Parent -> child: one message per call on the child's stdin, each with the
  recording's own entry header `code (1 byte) | monotonic (f64) | wall (f64)
  | length (u32)`. Traffic goes in batches (`T`): the relay packs each chunk
  as a recording entry, stamped when it was relayed, behind the others, and
  sends them as one message per FLUSH_BYTES or FLUSH_DELAY, prefixed by the
  batch's byte counts per direction; the header's wall time is the last
  entry's. The child copies a batch into the next frame's plaintext as it is
  and never looks at the entries: its cost is per batch, not per chunk (a
  relay's chunks can be a few hundred bytes). A batch holds whole entries and
  never more than a frame's payload. Control messages carry canonical JSON:
  `I` init, `S` start, `M` meta event, `E` end, `Q` storage query, `C` close.
- The child is single-threaded: it seals a frame when the next batch would
  not fit in it or 50 ms have passed, and checkpoints every fsync interval.
- Child -> parent on its stdout: `R` replies to S/E/Q/C (in order) and `P`
  problems (`size_limit`, `recording_failed`) at any time; a reader thread in
  the parent routes them.
- The pipe is blocking: if the child falls behind by more than the pipe's
  buffer, the relay waits for it (backpressure), never drops a byte.
- The parent never loses track of a dead child: a broken pipe or an EOF on
  its replies is `recording_failed`, and the next session starts a new child.
- If the parent dies, the child reads what is left in the pipe and ends the
  open session with the reason `daemon_lost`; it ignores SIGINT and SIGTERM
  (the parent decides when it stops).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shimmfa.core.recording import ENTRY, canonical_json
from shimmfa.errors import RecordingError, SessionStateError
from shimmfa.shim.recorder import (
    MAX_FRAME_PAYLOAD,
    POLL,
    SessionMeta,
    SessionRecorder,
    StorageExhaustedError,
)

log = logging.getLogger("shimmfa.recorder")

PIPE_SIZE = 1 << 20
REPLY_TIMEOUT = 30.0
FLUSH_BYTES = 64 << 10
FLUSH_DELAY = 0.02
DAEMON_LOST = "daemon_lost"
BATCH_COUNTS = struct.Struct(">QQ")  # a batch's traffic bytes in, out
MAX_ENTRY_PAYLOAD = MAX_FRAME_PAYLOAD - ENTRY.size
_ERRORS: dict[str, type[RecordingError]] = {
    "StorageExhaustedError": StorageExhaustedError,
    "SessionStateError": SessionStateError,
}


class RecorderProcess:
    """The parts of `SessionRecorder` the daemon uses, with the work done in
    a child process. Call it from one thread (the event loop's)."""

    def __init__(
        self,
        storage_root: Path,
        shim_id: str,
        *,
        options: dict[str, Any],
        max_bytes: int,
        on_problem: Callable[[str], None],
        call_later: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        self._args = {"storage_root": str(storage_root), "shim_id": shim_id, **options}
        self._call_later = call_later
        self._pending = bytearray()
        self._pending_in = self._pending_out = 0
        self._pending_wall = 0.0
        self._flush_armed = False
        self._max_bytes = max_bytes
        self._on_problem = on_problem
        self._child: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._session: str | None = None
        self._mono0 = 0.0
        self._size = 0
        self._limit_reported = False
        self._failed = False
        self._closing = False
        self.warnings: list[str] = []
        self._spawn()

    # -- the child --------------------------------------------------------------

    def _spawn(self) -> None:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "shimmfa.shim.recorder_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        if child.stdin is None or child.stdout is None:
            raise RecordingError("the recorder process has no pipes")
        fd = child.stdin.fileno()
        try:
            import fcntl

            fcntl.fcntl(fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ: room for bursts
        except OSError:
            pass
        self._child, self._fd, self._failed = child, fd, False
        self._replies = queue.Queue()
        threading.Thread(
            target=self._read_replies, args=(child.stdout, self._replies), daemon=True
        ).start()
        reply = self._call(b"I", self._args)
        self.warnings = list(reply.get("warnings", []))

    def _read_replies(self, stream: Any, replies: queue.Queue[dict[str, Any] | None]) -> None:
        try:
            for line in stream:
                message = json.loads(line)
                if message.get("problem"):
                    self._on_problem(message["problem"])
                else:
                    replies.put(message)
        except (OSError, ValueError) as exc:
            log.error("the recorder process's replies are unreadable: %s", exc)
        finally:
            stream.close()
        replies.put(None)
        if not self._closing:
            log.critical("the recorder process is gone")
            self._broken()

    def _broken(self) -> None:
        if not self._failed:
            self._failed = True
            self._on_problem("recording_failed")

    def _send(self, buffers: Sequence[bytes | bytearray]) -> None:
        written = os.writev(self._fd, buffers)
        total = sum(map(len, buffers))
        if written < total:  # interrupted part-way: finish it
            rest = memoryview(b"".join(buffers))[written:]
            while rest:
                rest = rest[os.write(self._fd, rest) :]

    def _call(self, kind: bytes, body: dict[str, Any]) -> dict[str, Any]:
        if self._failed or self._child is None:
            raise RecordingError("the recorder process is not running")
        try:
            self._flush()
            self._send(_control(kind, body))
            reply = self._replies.get(timeout=REPLY_TIMEOUT)
        except (OSError, queue.Empty):
            reply = None
        if reply is None:
            self._broken()
            raise RecordingError("the recorder process did not answer")
        error = reply.get("error")
        if error:
            raise _ERRORS.get(reply.get("type", ""), RecordingError)(error)
        return reply

    # -- what the daemon calls ----------------------------------------------------

    @property
    def open_session_id(self) -> str | None:
        return self._session

    def storage_problem(self) -> str | None:
        try:
            problem = self._call(b"Q", {}).get("storage")
        except RecordingError as exc:
            return str(exc)
        return str(problem) if problem else None

    def start_session(self, technician_id: str) -> str:
        if self._failed:
            self.close()
            self._closing = False
            self._spawn()
        reply = self._call(b"S", {"technician_id": technician_id})
        self._session, self._size, self._limit_reported = str(reply["session_id"]), 0, False
        self._mono0 = time.monotonic() - float(reply["elapsed"])
        return self._session

    def record(self, direction: str, data: bytes) -> None:
        """The relay's path: pack the chunk as a recording entry behind the
        others; they go to the child as one batch per FLUSH_BYTES or
        FLUSH_DELAY (or before any other message), not one write per chunk."""
        if self._session is None or self._failed:
            return
        code = b"i" if direction == "in" else b"o"
        monotonic, wall = time.monotonic() - self._mono0, time.time()
        pieces = (data,) if len(data) <= MAX_ENTRY_PAYLOAD else _cut(data)
        for piece in pieces:  # no entry outgrows a frame
            if len(self._pending) + ENTRY.size + len(piece) > MAX_FRAME_PAYLOAD:
                self._flush()
            self._pending += ENTRY.pack(code, monotonic, wall, len(piece))
            self._pending += piece
            if code == b"i":
                self._pending_in += len(piece)
            else:
                self._pending_out += len(piece)
            self._pending_wall = wall
        if len(self._pending) >= FLUSH_BYTES or self._call_later is None:
            self._flush()
        elif not self._flush_armed:
            self._flush_armed = True
            self._call_later(FLUSH_DELAY, self._flush_due)
        self._size += len(data)
        if self._size > self._max_bytes and not self._limit_reported:
            self._limit_reported = True
            self._on_problem("size_limit")

    def _flush_due(self) -> None:
        self._flush_armed = False
        self._flush()

    def _flush(self) -> None:
        """Send the packed entries to the child as one batch."""
        if not self._pending:
            return
        data, self._pending = self._pending, bytearray()
        counts = BATCH_COUNTS.pack(self._pending_in, self._pending_out)
        self._pending_in = self._pending_out = 0
        if self._failed:
            return
        header = ENTRY.pack(b"T", 0.0, self._pending_wall, len(counts) + len(data))
        try:
            self._send([header, counts, data])
        except OSError:
            self._broken()

    def append_event(self, session_id: str, event: dict[str, Any]) -> None:
        if session_id != self._session or self._failed:
            raise SessionStateError(f"session {session_id} is not open")
        try:
            self._flush()
            self._send(_control(b"M", event))
        except OSError:
            self._broken()

    def end_session(self, session_id: str, reason: str) -> SessionMeta:
        if session_id != self._session:
            raise SessionStateError(f"session {session_id} is not open")
        self._session = None
        reply = self._call(b"E", {"session_id": session_id, "reason": reason})
        meta = reply["meta"]
        return SessionMeta(**{**meta, "path": Path(meta["path"]) if meta.get("path") else None})

    def close(self) -> None:
        """End any open session (`shutdown`) and stop the child."""
        child = self._child
        if child is None:
            return
        self._closing = True
        if not self._failed:
            try:
                self._call(b"C", {})
            except RecordingError:
                pass
        self._child = None
        try:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
        self._session = None


def _cut(data: bytes) -> list[bytes]:
    return [data[i : i + MAX_ENTRY_PAYLOAD] for i in range(0, len(data), MAX_ENTRY_PAYLOAD)]


def _control(kind: bytes, body: dict[str, Any]) -> list[bytes]:
    data = canonical_json(body)
    return [ENTRY.pack(kind, 0.0, 0.0, len(data)), data]


# -- the child -------------------------------------------------------------------------


class _Server:
    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.recorder: SessionRecorder | None = None
        self.session: str | None = None

    def reply(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._out.write(json.dumps(message).encode() + b"\n")
            self._out.flush()

    def problem(self, reason: str) -> None:
        self.reply({"problem": reason})

    def handle(self, kind: bytes, body: bytes) -> bool:
        """Act on one control message; False when the parent said to close."""
        recorder = self.recorder
        request = json.loads(body)
        try:
            if kind == b"I":
                self.recorder = _make_recorder(request, self.problem)
                self.reply({"warnings": self.recorder.warnings})
            elif recorder is None:
                raise RecordingError("the recorder process was not initialised")
            elif kind == b"S":
                started = time.monotonic()
                self.session = recorder.start_session(request["technician_id"])
                self.reply({"session_id": self.session, "elapsed": time.monotonic() - started})
            elif kind == b"M":
                if self.session is not None:
                    recorder.append_event(self.session, request)
            elif kind == b"E":
                self.session = None
                meta = recorder.end_session(request["session_id"], request["reason"])
                fields = {k: getattr(meta, k) for k in SessionMeta.__dataclass_fields__}
                self.reply({"meta": {**fields, "path": str(meta.path) if meta.path else None}})
            elif kind == b"Q":
                self.reply({"storage": recorder.storage_problem()})
            elif kind == b"C":
                self.finish("shutdown")
                self.reply({})
                return False
        except RecordingError as exc:
            self.reply({"error": str(exc), "type": type(exc).__name__})
        return True

    def finish(self, reason: str) -> None:
        if self.recorder is not None:
            if self.session is not None:
                self.recorder.end_session(self.session, reason)
                self.session = None
            self.recorder.close()
            self.recorder = None


def _make_recorder(args: dict[str, Any], problem: Callable[[str], None]) -> SessionRecorder:
    return SessionRecorder(
        Path(args["storage_root"]),
        args["shim_id"],
        recipients=args.get("recipients") or None,
        fsync_interval=args["fsync_interval"],
        max_bytes=1 << 62,  # the parent counts and reports size_limit
        budget_bytes=args["budget_bytes"],
        min_free_bytes=args["min_free_bytes"],
        on_problem=problem,
        background=False,  # single-threaded: serve() calls service()
    )


class _Block:
    """Batches of entries, as the parent packed them, waiting to become one
    frame: a buffer allocated once, so that a steady stream costs no
    allocations."""

    def __init__(self) -> None:
        self.data = bytearray(MAX_FRAME_PAYLOAD)
        self.length = 0
        self.bytes_in = self.bytes_out = 0
        self.last_wall = 0.0
        self.started = 0.0

    def add(self, entries: memoryview, bytes_in: int, bytes_out: int, wall: float) -> None:
        """Append one batch; the caller flushed first if it would not fit."""
        if not self.length:
            self.started = time.monotonic()
        end = self.length + len(entries)
        self.data[self.length : end] = entries
        self.length = end
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.last_wall = wall

    def room(self) -> int:
        return MAX_FRAME_PAYLOAD - self.length

    def flush(self, recorder: SessionRecorder | None) -> None:
        """Seal what is here into a frame now (the buffer is reused after)."""
        if self.length and recorder is not None:
            with memoryview(self.data) as view:
                recorder.record_packed(
                    view[: self.length], self.bytes_in, self.bytes_out, self.last_wall
                )
                recorder.service()
        self.length = 0
        self.bytes_in = self.bytes_out = 0


READ_BUFFER = 4 << 20  # holds any whole message: a batch is at most a frame
BATCH_BYTES = 256 << 10
BATCH_PAUSE = 0.005


def _take_batch(server: _Server, block: _Block, wall: float, body: memoryview) -> None:
    """A `T` message: byte counts, then whole entries for the open session."""
    if len(body) < BATCH_COUNTS.size or len(body) - BATCH_COUNTS.size > MAX_FRAME_PAYLOAD:
        raise RecordingError(f"a traffic batch of {len(body)} bytes is malformed")
    if server.session is None:
        return
    bytes_in, bytes_out = BATCH_COUNTS.unpack_from(body)
    entries = body[BATCH_COUNTS.size :]
    if len(entries) > block.room():
        block.flush(server.recorder)
    block.add(entries, bytes_in, bytes_out, wall)


def _protocol_error(server: _Server, block: _Block, problem: str) -> None:
    """The parent sent what it never sends: a bug, not data. Close the
    recording honestly (footer `recording_failed`) and stop; the parent sees
    the end of the replies and reports `recording_failed`."""
    log.critical("the recorder process stops: %s", problem)
    block.flush(server.recorder)
    server.finish("recording_failed")


def serve(stdin: int = 0) -> None:
    """The child: read messages until `C` or the end of the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = _Server(sys.stdout.buffer)
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    filled = 0
    block = _Block()
    while True:
        ready, _, _ = select.select([stdin], [], [], POLL)
        if ready:
            count = os.readv(stdin, [view[filled:]])
            if not count:  # the parent is gone: close what was open, honestly named
                block.flush(server.recorder)
                server.finish(DAEMON_LOST)
                return
            filled += count
            offset = 0
            while filled - offset >= ENTRY.size:
                code, _, wall, length = ENTRY.unpack_from(buffer, offset)
                end = offset + ENTRY.size + length
                if end > filled:
                    if end - offset <= READ_BUFFER:
                        break
                    _protocol_error(server, block, f"a message of {length} bytes is too long")
                    return
                if code == b"T":
                    try:
                        _take_batch(server, block, wall, view[offset + ENTRY.size : end])
                    except RecordingError as exc:
                        _protocol_error(server, block, str(exc))
                        return
                else:
                    block.flush(server.recorder)
                    if not server.handle(code, bytes(view[offset + ENTRY.size : end])):
                        return
                offset = end
            if offset:  # keep the incomplete message, at the front
                buffer[: filled - offset] = view[offset:filled]
                filled -= offset
        if block.length and (not ready or time.monotonic() - block.started >= POLL):
            block.flush(server.recorder)
        if server.recorder is not None:
            server.recorder.service()
        if ready and filled < BATCH_BYTES:
            # Let the pipe fill for a moment: a reader asleep elsewhere than on
            # the pipe costs the relay's writes no wake-up, and reads come in
            # larger batches. The pipe holds far more than this pause's worth.
            time.sleep(BATCH_PAUSE)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    serve()
