"""The relay's step for one chunk: read it, record it, write it.

`chunk(src, dst, sink, code, mono0)` is the whole per-chunk work of the
relay's hot path (`pumps.Pump`). It is built in C (`_wire.c`) when the
package is installed with a compiler at hand, together with `spin_c`, the
event loop's wait that runs the chunk step itself for the session's two
readers (`pumps.spin`): relayed bytes then cost no Python at all
(benchmarks/relay_bench.py: p50 0.96x socat's, against 1.13x with the C
step alone and 1.2x in Python). Otherwise, or with SHIMMFA_PURE_PYTHON=1 in
the environment, the Python version below does the same work, one chunk per
turn of the selector. Both steps are tested against the same cases
(tests/shim/test_wire.py; spin in tests/shim/test_spin.py).

Rules (the same for both):
- Read at most READ_SIZE bytes from the non-blocking fd `src`.
- Unless `sink` is None, append them to it as one recording entry (ENTRY:
  `code`, monotonic seconds since `mono0`, wall time, length, bytes) before
  writing them: a byte that cannot be recorded is never sent.
- Unless `dst` < 0 (the caller has a backlog to write first), write them to
  the non-blocking fd `dst`.
- Return `n` (read, recorded, written in full), 0 (end of file), `-errno`
  (the read failed; -EAGAIN: nothing to read) or `(n, rest, error)`: read and
  recorded, with `rest` still to be written, or the write failed with errno
  `error` (then `rest` is empty).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

from shimmfa.core.recording import ENTRY, READ_SIZE, by_direction
from shimmfa.core.recording import ENTRY_IN as IN
from shimmfa.core.recording import ENTRY_OUT as OUT

__all__ = ["IN", "OUT", "READ_SIZE", "by_direction", "chunk", "chunk_python", "spin_c"]

PURE_PYTHON_VARIABLE = "SHIMMFA_PURE_PYTHON"

Chunk = int | tuple[int, bytes, int]


ChunkFunction = Callable[[int, int, bytearray | None, int, float], Chunk]


def chunk_python(src: int, dst: int, sink: bytearray | None, code: int, mono0: float) -> Chunk:
    """`chunk`, in Python: the fallback, and the reference for the C one."""
    if sink is not None and type(sink) is not bytearray:
        raise TypeError("sink must be a bytearray or None")
    if not 0 <= code <= 255:
        raise ValueError("code must be a byte value")
    if src < 0 or dst < -1:
        raise ValueError("not a file descriptor")
    try:
        data = os.read(src, READ_SIZE)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    if not data:
        return 0
    if sink is not None:
        sink += ENTRY.pack(bytes((code,)), time.monotonic() - mono0, time.time(), len(data))
        sink += data
    if dst < 0:
        return (len(data), data, 0)
    try:
        written = os.write(dst, data)
    except BlockingIOError:
        written = 0
    except OSError as exc:
        return (len(data), b"", exc.errno or errno.EIO)
    if written == len(data):
        return written
    return (len(data), data[written:], 0)


Routes = tuple[tuple[int, int, int], ...]
SpinResult = tuple[list[tuple[int, int]], tuple[int, ...], int, tuple[int, Chunk] | None]
SpinFunction = Callable[[int, float, Routes, bytearray | None, float, int], SpinResult]


def _load() -> tuple[Any, str]:
    """The built C module (None to use the Python step), and a line saying
    which step runs (the daemon logs it)."""
    if os.environ.get(PURE_PYTHON_VARIABLE):
        return None, f"in Python ({PURE_PYTHON_VARIABLE} is set)"
    try:
        from shimmfa.shim.link import _wire  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"in Python (the C step is not built: {exc})"
    if (_wire.READ_SIZE, _wire.ENTRY_SIZE) != (READ_SIZE, ENTRY.size):
        return None, "in Python (the built C step does not match this version)"
    return _wire, "in C (shimmfa.shim.link._wire), relaying from the event loop's wait"


_C, STEP = _load()
chunk: ChunkFunction = chunk_python if _C is None else _C.chunk
ACCELERATED = _C is not None
spin_c: SpinFunction | None = None if _C is None else _C.spin
"""`spin(epfd, timeout, routes, sink, mono0, batch_bytes)`, in C only (with
the C step): wait on the epoll fd `epfd` up to `timeout` seconds (< 0: no
limit) and, for each event that is exactly EPOLLIN on a route's `src`, do
`chunk(src, dst, sink, code, mono0)` for that route (code, dst) right there.
Returns `(events, moved, last_entry, stop)` as soon as there is anything for
Python to do: the events it did not handle (fd, mask); per route, the bytes
moved in full; the offset in `sink` of the last entry it packed (-1: none);
and None, or (route index, result) for the chunk whose result was not plain
success or EAGAIN (its bytes are in `sink`, not in `moved`). It runs no
chunk once `sink` holds `batch_bytes` or after a `stop` (the fds are
level-triggered: their events come back). EINTR returns at once."""
