"""One open recording file: the entries queued for it, sealed into frames
and written, with signed checkpoints and fsyncs.

Rules:
- `drain()` seals everything queued into frames and writes them without a
  joined copy (`writev`); `sync()` writes a signed checkpoint and fsyncs.
  After a crash every frame up to the last checkpoint verifies.
- Every byte written is counted against the recordings' storage.
- No frame outgrows `MAX_FRAME_PAYLOAD`: longer chunks are cut into entries.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from pathlib import Path

from shimmfa.core.recording import Entry, RecordingEncoder
from shimmfa.shim.recorder.storage import RecordingStorage

__all__ = ["MAX_FRAME_PAYLOAD", "PACKED", "SessionFile", "SessionMeta", "fsync_dir"]

PACKED = object()  # queue marker: (PACKED, bytes_in, bytes_out, last_wall, block)
WRITEV_MAX = 512  # buffers per writev call (the kernel takes up to 1024)
MAX_FRAME_PAYLOAD = 256 << 10


@dataclasses.dataclass
class SessionMeta:
    session_id: str
    technician_id: str
    shim_id: str
    started_at: float
    ended_at: float | None = None
    bytes_inbound: int = 0
    bytes_outbound: int = 0
    terminal_reason: str | None = None
    path: Path | None = None


@dataclasses.dataclass
class SessionFile:
    meta: SessionMeta
    encoder: RecordingEncoder
    fd: int
    storage: RecordingStorage
    mono0: float = dataclasses.field(default_factory=time.monotonic)
    queue: collections.deque[Entry] = dataclasses.field(default_factory=collections.deque)
    size: int = 0
    unsynced: bool = False
    last_sync: float = dataclasses.field(default_factory=time.monotonic)
    limit_reported: bool = False
    failed: bool = False

    def write(self, data: bytes) -> None:
        """Write all of `data` (no fsync)."""
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.storage.used += len(data)

    def drain(self) -> None:
        """Seal everything queued into frames and write them (no fsync).
        Buffers go to the kernel as they are (`writev`): no joined copy."""
        queue = self.queue
        out: list[bytes] = []
        if queue:
            self.unsynced = True
        while queue:
            if queue[0][0] is PACKED:
                _, bytes_in, bytes_out, wall, block = queue.popleft()  # type: ignore[misc]
                out.extend(self.encoder.packed_frame_parts(block, bytes_in, bytes_out, wall))
                continue
            batch: list[Entry] = []
            size = 0
            while queue and size < MAX_FRAME_PAYLOAD and queue[0][0] is not PACKED:
                entry = queue.popleft()
                batch.append(entry)
                size += len(entry[3])
            out.extend(self.encoder.frame_parts(batch))
            if len(out) >= WRITEV_MAX:
                self._writev(out)
                out = []
        if out:
            self._writev(out)

    def _writev(self, buffers: list[bytes]) -> None:
        total = sum(map(len, buffers))
        written = os.writev(self.fd, buffers)
        if written < total:  # a short write: finish the rest plainly
            self.write(b"".join(buffers)[written:])
            self.storage.used -= total - written
        self.storage.used += total

    def sync(self) -> None:
        """A signed checkpoint of everything written, then fsync."""
        self.write(self.encoder.checkpoint())
        os.fsync(self.fd)
        # Written and on disk: the page cache need not keep it (recordings are
        # write-once), which keeps the writer reusing warm pages.
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.unsynced = False
        self.last_sync = time.monotonic()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
