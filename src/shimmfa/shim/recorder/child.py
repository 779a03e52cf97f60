"""The recorder process itself: the child `RecorderProcess` starts
(`python -m shimmfa.shim.recorder.child`). The messages it reads and the
replies it writes are described in `process`.

Rules:
- Single-threaded: it seals a frame when the next batch would not fit in it
  or POLL has passed, and checkpoints every fsync interval.
- A traffic batch (`T`) is copied into the next frame's plaintext as it is;
  the child never parses its entries, so its cost is per batch, not per
  chunk.
- The end of its stdin means the parent died: it seals what it has and
  closes the open session with the reason `daemon_lost`. It ignores SIGINT
  and SIGTERM (the parent decides when it stops).
- A message the parent never sends (garbled, too long) is a bug, not data:
  the open recording is closed as `recording_failed` and the child stops.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shimmfa.core.recording import ENTRY
from shimmfa.errors import RecordingError
from shimmfa.shim.recorder.session_recorder import (
    MAX_FRAME_PAYLOAD,
    POLL,
    SessionMeta,
    SessionRecorder,
)

log = logging.getLogger("shimmfa.recorder")

BATCH_COUNTS = struct.Struct(">QQ")  # a batch's traffic bytes in, out
DAEMON_LOST = "daemon_lost"


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
                extra = request.get("extra")
                self.session = recorder.start_session(
                    request["technician_id"], extra=extra if isinstance(extra, dict) else None
                )
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
# 1 ms, not 5: in interleaved runs of 10-14 rounds on the 2-vCPU machine,
# bulk against socat was 0.84-0.87 with 1 ms (2 runs), 0.82-0.88 with 2 ms
# (4) and 0.80-0.83 with 5 ms (4); 20 ms lets the pipe fill (0.62). Shorter
# bursts of sealing get in the wire's way less than longer ones.
BATCH_PAUSE = 0.001


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
