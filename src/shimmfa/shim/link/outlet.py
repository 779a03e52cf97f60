"""A non-blocking writer for one file descriptor, with a backlog.

Rules: `write()` writes what it can at once and queues the rest, watching the
fd for writability; the caller stops reading its source while a backlog
exists (backpressure) and resumes from `when_drained`. A write error (the
other side hung up) drops the data and is reported once, from a fresh loop
callback, so the caller's current actions finish first.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class HangupError(Exception):
    """A side of the relay went away."""


class Outlet:
    """Non-blocking writer for one fd, with a backlog for when it is full."""

    __slots__ = ("fd", "backlog", "_loop", "_on_drained", "_on_error")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_error: Callable[[OSError], None],
    ) -> None:
        self.fd = fd
        self.backlog = bytearray()
        self._loop = loop
        self._on_drained: Callable[[], None] | None = None
        self._on_error = on_error

    def write(self, data: bytes) -> bool:
        """Write or queue `data`. True when nothing is left queued."""
        if self.backlog:
            self.backlog += data
            return False
        try:
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self.failed(exc)
            return True
        if written == len(data):
            return True
        self.queue(data[written:])
        return False

    def queue(self, data: bytes) -> None:
        """Keep `data` until the fd takes it (after a short or refused write)."""
        if not self.backlog:
            self._loop.add_writer(self.fd, self._flush)
        self.backlog += data

    def failed(self, exc: OSError) -> None:
        """A write failed: the other end hung up (EIO). Drop the data and
        report it from a fresh callback, so the caller's actions finish first."""
        self.stop()
        self._loop.call_soon(self._on_error, exc)

    def when_drained(self, callback: Callable[[], None]) -> None:
        self._on_drained = callback

    def _flush(self) -> None:
        try:
            written = os.write(self.fd, self.backlog)
        except BlockingIOError:
            return
        except OSError as exc:
            self.stop()
            self._on_error(exc)
            return
        del self.backlog[:written]
        if not self.backlog:
            self._loop.remove_writer(self.fd)
            callback, self._on_drained = self._on_drained, None
            if callback is not None:
                callback()

    def stop(self) -> None:
        self._loop.remove_writer(self.fd)
        self.backlog.clear()
        self._on_drained = None
