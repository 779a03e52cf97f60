"""The relay's step for one chunk: read it, record it, write it.

`chunk(src, dst, sink, code, mono0)` is the whole per-chunk work of the
relay's hot path (`Relay._pump`). It is built in C (`_wire.c`) when the
package is installed with a compiler at hand, which cuts the relay's own
latency roughly in half (benchmarks/relay_bench.py: p50 1.10x socat against
1.2x); otherwise, or with SHIMMFA_PURE_PYTHON=1 in the environment, the
Python version below does the same thing. Both are tested against the same
cases (tests/shim/test_wire.py).

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

from shimmfa.core.recording import ENTRY

READ_SIZE = 4096  # a tty read never returns more than the 4 KiB line-discipline buffer
IN, OUT = ord("i"), ord("o")  # the entry codes of the two directions (ENTRY's first byte)
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


def _load() -> tuple[ChunkFunction, str]:
    """The step to use, and a line saying which (the daemon logs it)."""
    if os.environ.get(PURE_PYTHON_VARIABLE):
        return chunk_python, f"in Python ({PURE_PYTHON_VARIABLE} is set)"
    try:
        from shimmfa.shim import _wire  # type: ignore[attr-defined]
    except ImportError as exc:
        return chunk_python, f"in Python (the C step is not built: {exc})"
    if (_wire.READ_SIZE, _wire.ENTRY_SIZE) != (READ_SIZE, ENTRY.size):
        return chunk_python, "in Python (the built C step does not match this version)"
    c_chunk: ChunkFunction = _wire.chunk
    return c_chunk, "in C (shimmfa.shim._wire)"


chunk, STEP = _load()
ACCELERATED = chunk is not chunk_python
