"""The event loop's selector: epoll, with a fast path for pass-through.

`asyncio.SelectorEventLoop(PassThroughSelector())` is the daemon's loop. For
every fd but the open session's two it is the standard `EpollSelector`.

Rules:
- `run_inline(fd, reader)` makes `select()` call `reader` itself when `fd`
  is readable. The fd stays registered with the loop (`add_reader`), which
  then sees no read events for it: pausing, hang-up and session end remove
  it from both, through `Readers`, the one way the link changes a reader.
- A reader returns True when all it did was move bytes. While only inline
  readers had events and all returned True, `select()` waits again within
  the timeout asyncio gave it, instead of handing asyncio an empty list for
  a full turn of the loop per chunk. Any other event, the end of that
  timeout, a reader returning False or a change to the inline readers
  returns to asyncio at once, so timers, signals and callbacks scheduled
  from a reader run as they would without the fast path.
- With `spin` (`pumps.spin`, when the C step is built) the wait itself
  relays: the readers are the session's `Pump`s, and their plain readable
  events are handled in C without coming back here; what `spin` leaves
  (other events, a pump's hang-up or error) is handled as above.
- Built on public APIs only: the epoll instance is reached through a
  duplicate of `fileno()`, keys through `get_map()`.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import selectors
import time
from collections.abc import Callable

from shimmfa.shim.link.pumps import Pump, Spin

__all__ = ["PassThroughSelector", "Readers"]

_READABLE = ~select.EPOLLOUT  # as EpollSelector: IN, PRI, ERR, HUP all mean "read now"
_WRITABLE = ~select.EPOLLIN

Ready = list[tuple[selectors.SelectorKey, int]]


class PassThroughSelector(selectors.EpollSelector):
    def __init__(self, spin: Spin | None = None) -> None:
        super().__init__()
        self._epoll = select.epoll.fromfd(os.dup(self.fileno()))
        self._inline: dict[int, Pump] = {}
        self._changed = False
        self._spin = spin

    def run_inline(self, fd: int, reader: Pump | None) -> None:
        """Call `reader` from `select()` when `fd` is readable; None stops it."""
        if reader is None:
            self._inline.pop(fd, None)
        else:
            self._inline[fd] = reader
        self._changed = True

    def close(self) -> None:
        self._inline.clear()
        self._epoll.close()
        super().close()

    def select(self, timeout: float | None = None) -> Ready:
        inline = self._inline
        if not inline:
            return super().select(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        poll, keys, spin = self._epoll.poll, self.get_map(), self._spin
        while True:
            self._changed = False
            if spin is not None:  # the wait relays; it rounds the timeout itself
                events, quiet = spin(self._epoll.fileno(), timeout, tuple(inline.values()))
            else:
                if timeout is None:
                    wait = -1.0
                elif timeout <= 0:
                    wait = 0.0
                else:  # as EpollSelector: wait at least `timeout` (1 ms resolution)
                    wait = math.ceil(timeout * 1e3) * 1e-3
                try:
                    events = poll(wait, len(keys) or 1)
                except InterruptedError:
                    return []
                if not events:
                    return []
                quiet = True
            ready: Ready = []
            for fd, event in events:
                reader = inline.get(fd)  # looked up late: an earlier reader may have removed it
                if reader is not None and event & _READABLE:
                    quiet = reader() and quiet
                    mask = selectors.EVENT_WRITE if event & _WRITABLE else 0
                else:
                    mask = (selectors.EVENT_WRITE if event & _WRITABLE else 0) | (
                        selectors.EVENT_READ if event & _READABLE else 0
                    )
                key = keys.get(fd) if mask else None
                if key is not None and mask & key.events:
                    ready.append((key, mask & key.events))
            if ready or not quiet or self._changed:
                return ready
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return ready


class Readers:
    """Every reader change of the link goes through here: it keeps the
    loop's readers and the selector's inline ones in step."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fast: PassThroughSelector | None) -> None:
        self._loop = loop
        self._fast = fast

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        """Read `fd` with `reader`, through the loop."""
        self._loop.add_reader(fd, reader)
        if self._fast is not None:
            self._fast.run_inline(fd, None)

    def add_pump(self, fd: int, pump: Pump) -> None:
        """Read `fd` with a session's pump, straight from the selector if it can."""
        self._loop.add_reader(fd, pump)
        if self._fast is not None:
            self._fast.run_inline(fd, pump)

    def remove(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        if self._fast is not None:
            self._fast.run_inline(fd, None)
