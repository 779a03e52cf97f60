"""The daemon's recorder, in a process of its own (`child`).

Sealing and writing a recording (ChaCha20-Poly1305, BLAKE3, writes, fsync)
in a thread of the relay's process slowed the wire by a third: the relay
thread kept waiting for the interpreter lock. `RecorderProcess` runs a
`SessionRecorder` in a child process instead; the relay's cost is packing
each chunk and one `writev` to a pipe per batch.

Rules:
- Parent -> child: one message per call on the child's stdin, each with the
  recording's own entry header `code (1 byte) | monotonic (f64) | wall (f64)
  | length (u32)`. Traffic goes in batches (`T`): the relay's pump packs each
  chunk as a recording entry (`wire.chunk` into `sink()`), stamped when it
  was relayed, behind the others, and `recorded()` sends them as one message
  per FLUSH_BYTES or FLUSH_DELAY, prefixed by the batch's byte counts per
  direction; the header's wall time is the last entry's. The child copies
  a batch into the next frame's plaintext as it is
  and never looks at the entries: its cost is per batch, not per chunk (a
  relay's chunks can be a few hundred bytes). A batch holds whole entries and
  never more than a frame's payload. Control messages carry canonical JSON:
  `I` init, `S` start, `M` meta event, `E` end, `Q` storage query, `C` close.
- Child -> parent on its stdout: `R` replies to S/E/Q/C (in order) and `P`
  problems (`size_limit`, `recording_failed`) at any time; a reader thread in
  the parent routes them.
- The pipe is blocking: if the child falls behind by more than the pipe's
  buffer, the relay waits for it (backpressure), never drops a byte.
- The child runs at the idle scheduling class (SCHED_IDLE): it takes a CPU
  only when the wire does not want it. It cannot starve for long: when the
  pipe is full the relay waits, and the CPU is the child's. Its fsync
  interval is "every second the CPU is free", which on the shim is always.
- The parent never loses track of a dead child: a broken pipe or an EOF on
  its replies is `recording_failed`. `revive()` (the relay's recording
  check) starts a new child at once, and says why it could not; children
  that keep dying young are restarted after a doubling delay (up to
  RESPAWN_MAX), not in a tight loop.
- If the parent dies, the child reads what is left in the pipe and ends the
  open session with the reason `daemon_lost` (see `child`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shimmfa.core.recording import (
    ENTRY,
    ENTRY_IN,
    ENTRY_OUT,
    READ_SIZE,
    by_direction,
    canonical_json,
)
from shimmfa.errors import RecordingError, SessionStateError
from shimmfa.shim.recorder.child import BATCH_COUNTS
from shimmfa.shim.recorder.session_recorder import (
    MAX_FRAME_PAYLOAD,
    SessionMeta,
    StorageExhaustedError,
)

log = logging.getLogger("shimmfa.recorder")

PIPE_SIZE = 1 << 20
REPLY_TIMEOUT = 30.0
RESPAWN_FIRST = 0.5
RESPAWN_MAX = 30.0
CHILD = [sys.executable, "-m", "shimmfa.shim.recorder.child"]
FLUSH_BYTES = 64 << 10
FLUSH_DELAY = 0.02
MAX_ENTRY_PAYLOAD = MAX_FRAME_PAYLOAD - ENTRY.size
if FLUSH_BYTES + ENTRY.size + READ_SIZE > MAX_FRAME_PAYLOAD:
    raise RuntimeError("a chunk packed by wire.chunk must always fit in the frame")
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
        command: Sequence[str] = tuple(CHILD),
    ) -> None:
        self._args = {"storage_root": str(storage_root), "shim_id": shim_id, **options}
        self._command = list(command)
        self._last_spawn = 0.0
        self._respawn_delay = 0.0
        self.spawns = 0
        self._call_later = call_later
        self._pending = bytearray()
        self._pending_in = self._pending_out = 0
        self._last_entry = 0
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
        self._last_spawn = time.monotonic()
        self.spawns += 1
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._command,
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
        _yield_to_the_wire(child.pid)
        self._child, self._fd, self._failed = child, fd, False
        self._replies = queue.Queue()
        threading.Thread(
            target=self._read_replies, args=(child, self._replies), daemon=True
        ).start()
        reply = self._call(b"I", self._args)
        self.warnings = list(reply.get("warnings", []))

    def _read_replies(
        self, child: subprocess.Popen[bytes], replies: queue.Queue[dict[str, Any] | None]
    ) -> None:
        stream = child.stdout
        if stream is None:
            return
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
        if not self._closing and self._child is child:  # not one already replaced
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
        """Why the recorder's disk cannot take a new session, or None.
        RecordingError when the recorder itself does not answer: that is
        not the disk's fault."""
        problem = self._call(b"Q", {}).get("storage")
        return str(problem) if problem else None

    def revive(self) -> str | None:
        """None when the child runs (a new one if it had died); else why no
        child runs now."""
        if not self._failed and self._child is not None:
            return None
        now = time.monotonic()
        if now < self._last_spawn + self._respawn_delay:
            return "the recorder process died; it is being replaced"
        lived = now - self._last_spawn
        delay = max(self._respawn_delay * 2, RESPAWN_FIRST)
        self._respawn_delay = 0.0 if lived >= RESPAWN_MAX else min(delay, RESPAWN_MAX)
        self.close()
        self._closing = False
        try:
            self._spawn()
        except (OSError, RecordingError) as exc:
            self._failed = True
            log.critical("the recorder process cannot be started: %s", exc)
            return f"the recorder process cannot be started: {exc}"
        log.warning("the recorder process was replaced")
        return None

    def start_session(self, technician_id: str, *, break_glass: bool = False) -> str:
        """Start recording a session; `break_glass` marks its header."""
        if self.revive() is not None:
            raise RecordingError("the recorder process is not running")
        request: dict[str, object] = {"technician_id": technician_id}
        if break_glass:
            request["extra"] = {"break_glass": True}
        reply = self._call(b"S", request)
        self._session, self._size, self._limit_reported = str(reply["session_id"]), 0, False
        self._mono0 = time.monotonic() - float(reply["elapsed"])
        return self._session

    def sink(self) -> bytearray | None:
        """Where the relay's pump packs its chunks as recording entries
        (`wire.chunk`), then calls `recorded()`; None while nothing is
        recorded. Never holds more than FLUSH_BYTES between calls, so a
        chunk always fits in the frame."""
        return self._pending if self._session is not None and not self._failed else None

    @property
    def mono0(self) -> float:
        """`time.monotonic()` at the start of the open session."""
        return self._mono0

    @property
    def batch_bytes(self) -> int:
        """Account (`recorded`) once the sink holds this much: a chunk more
        still fits in the frame."""
        return FLUSH_BYTES

    def recorded(self, count_in: int, count_out: int, last_entry: int) -> None:
        """Entries of `count_in` + `count_out` traffic bytes were packed at
        the end of `sink()`, the last of them at offset `last_entry`: count
        them, and send the batch when it is full or FLUSH_DELAY after its
        first entry. Nothing while no session is open (bytes the pumps
        moved after its end are not its bytes)."""
        if self._session is None:
            return
        self._last_entry = last_entry
        self._pending_in += count_in
        self._pending_out += count_out
        self._size += count_in + count_out
        if len(self._pending) >= FLUSH_BYTES or self._call_later is None:
            self._flush()
        elif not self._flush_armed:
            self._flush_armed = True
            self._call_later(FLUSH_DELAY, self._flush_due)
        if self._size > self._max_bytes and not self._limit_reported:
            self._limit_reported = True
            self._on_problem("size_limit")

    def record(self, direction: str, data: bytes) -> None:
        """Record a chunk the relay did not read through `wire.chunk` (bytes
        typed ahead of the login, forwarded by the gate)."""
        if self.sink() is None:
            return
        code = ENTRY_IN if direction == "in" else ENTRY_OUT
        monotonic, wall = time.monotonic() - self._mono0, time.time()
        pieces = (data,) if len(data) <= MAX_ENTRY_PAYLOAD else _cut(data)
        for piece in pieces:  # no entry outgrows a frame
            if len(self._pending) + ENTRY.size + len(piece) > MAX_FRAME_PAYLOAD:
                self._flush()
            entry = len(self._pending)
            self._pending += ENTRY.pack(bytes((code,)), monotonic, wall, len(piece))
            self._pending += piece
            self.recorded(*by_direction(code, len(piece)), entry)

    def _flush_due(self) -> None:
        self._flush_armed = False
        self._flush()

    def _flush(self) -> None:
        """Send the packed entries to the child as one batch."""
        if not self._pending:
            return
        data, self._pending = self._pending, bytearray()
        wall = ENTRY.unpack_from(data, self._last_entry)[2]  # the last entry's
        counts = BATCH_COUNTS.pack(self._pending_in, self._pending_out)
        self._pending_in = self._pending_out = 0
        if self._failed:
            return
        header = ENTRY.pack(b"T", 0.0, wall, len(counts) + len(data))
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


def _yield_to_the_wire(pid: int) -> None:
    """Put the recorder at the idle scheduling class. Measured on a 2-vCPU
    machine: 3-5 points of bulk throughput against socat. Lowering priority
    needs no privilege; where the class does not exist it is skipped."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:
        log.info("the recorder process keeps the normal scheduling class: %s", exc)


def _cut(data: bytes) -> list[bytes]:
    return [data[i : i + MAX_ENTRY_PAYLOAD] for i in range(0, len(data), MAX_ENTRY_PAYLOAD)]


def _control(kind: bytes, body: dict[str, Any]) -> list[bytes]:
    data = canonical_json(body)
    return [ENTRY.pack(kind, 0.0, 0.0, len(data)), data]
