"""The open session's two readers, the relay's hot path, and `spin`, which
runs them from C between the event loop's waits.

Rules:
- A `Pump` is one direction of an open session: it reads its source, packs
  each chunk into the recorder's batch (the `Tap`'s sink) and writes it to
  its outlet, through `wire.chunk`. Called, it does one chunk in Python
  around that step: the fallback when `wire.spin` is not built, and the
  reader for any event `spin` leaves to Python.
- `spin(epfd, timeout, pumps)` is `PassThroughSelector`'s wait while pumps
  run inline and the C step is built: `wire.spin` waits on the loop's epoll
  and, for every plain readable event on a pump's source, does the chunk
  in C, without coming back to Python, until something needs it: any other
  event, a chunk that did not simply move bytes (end of file, a read or
  write error, a short write), the batch reaching `Tap.batch_bytes`, or
  the timeout. So a relayed byte costs no Python at all; Python counts the
  bytes once per batch.
- Every chunk read is counted (`Tap.recorded`) before a result that is not
  plain success is acted on (`Pump.settle`): the counts in a batch always
  match its entries.
- Any unexpected exception, in either path, goes to the relay's fail safe.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from shimmfa.core.recording import ENTRY
from shimmfa.shim.link.outlet import Outlet
from shimmfa.shim.link.seams import Tap
from shimmfa.shim.link.wire import IN, Chunk, by_direction, chunk, spin_c

Events = list[tuple[int, int]]


class Pump:
    """Reads `src`, records, writes `outlet`: one direction of a session."""

    __slots__ = ("src", "outlet", "code", "tap", "_gone", "touch", "_pause", "fail_safe")

    def __init__(
        self,
        src: int,
        outlet: Outlet,
        code: int,
        tap: Tap,
        *,
        gone: Callable[[str], None],
        touch: Callable[[], None],
        pause: Callable[[Pump], None],
        fail_safe: Callable[[BaseException], None],
    ) -> None:
        self.src, self.outlet, self.code, self.tap = src, outlet, code, tap
        self._gone, self.touch, self._pause = gone, touch, pause
        self.fail_safe = fail_safe

    def route(self) -> tuple[int, int, int]:
        """(src, dst, code) for `wire.spin`; dst -1 while the outlet has a
        backlog to write first."""
        outlet = self.outlet
        return (self.src, -1 if outlet.backlog else outlet.fd, self.code)

    def __call__(self) -> bool:
        """One chunk. True when all it did was move bytes (or find none)."""
        try:
            tap, outlet = self.tap, self.outlet
            sink = tap.sink()
            dst = -1 if outlet.backlog else outlet.fd
            result = chunk(self.src, dst, sink, self.code, tap.mono0)
            count = result if isinstance(result, int) else result[0]
            if count > 0:
                self.touch()
                if sink is not None:
                    tap.recorded(*by_direction(self.code, count), len(sink) - ENTRY.size - count)
            if isinstance(result, int) and result > 0:
                return True
            return self.settle(result)
        except Exception as exc:
            self.fail_safe(exc)
            return False

    def settle(self, result: Chunk) -> bool:
        """Act on a chunk's result once its bytes are counted. True when
        there is nothing to act on."""
        if isinstance(result, int):
            if result > 0 or result == -errno.EAGAIN:
                return True
            if result in (0, -errno.EIO):
                self._gone("end of file")
                return False
            raise OSError(-result, os.strerror(-result))
        _, rest, error = result
        if error:
            self.outlet.failed(OSError(error, os.strerror(error)))
        else:
            self.outlet.queue(rest)
            self._pause(self)
        return False


Spin = Callable[[int, float | None, tuple[Pump, ...]], tuple[Events, bool]]


def spin(epfd: int, timeout: float | None, pumps: tuple[Pump, ...]) -> tuple[Events, bool]:
    """Wait on `epfd` up to `timeout` (None: no limit) and relay the pumps'
    chunks in C. Returns the events left to the caller and whether all that
    happened was bytes moving."""
    first = pumps[0]
    try:
        if spin_c is None:
            raise RuntimeError("wire.spin is not built")
        tap = first.tap
        sink = tap.sink()
        routes = tuple(pump.route() for pump in pumps)
        wait = -1.0 if timeout is None else max(timeout, 0.0)
        events, moved, last_entry, stop = spin_c(
            epfd, wait, routes, sink, tap.mono0, tap.batch_bytes
        )
        counts = list(moved)
        if stop is not None and not isinstance(stop[1], int):
            counts[stop[0]] += stop[1][0]
        if any(counts):
            first.touch()
            if sink is not None:
                count_in = sum(c for pump, c in zip(pumps, counts, strict=True) if pump.code == IN)
                tap.recorded(count_in, sum(counts) - count_in, last_entry)
        if stop is not None:
            return events, pumps[stop[0]].settle(stop[1])
        return events, True
    except Exception as exc:
        first.fail_safe(exc)
        return [], False


SPIN: Spin | None = spin if spin_c is not None else None
"""What the daemon's selector waits with: `spin` when the C step is built."""
