"""The relay's per-chunk step (`wire.chunk`), in C and in Python, on real
pipes and PTYs: the same results for the same cases, and every byte read is
recorded (as a recording entry) before it is written."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shimmfa.core.recording import ENTRY
from shimmfa.shim.link import wire
from shimmfa.shim.link.wire import IN, OUT

try:
    from shimmfa.shim.link import _wire  # type: ignore[attr-defined]

    C_CHUNK = _wire.chunk
except ImportError:  # the test below says so; these cases then skip the C step
    C_CHUNK = None

STEPS = [
    pytest.param(wire.chunk_python, id="python"),
    pytest.param(
        C_CHUNK, id="c", marks=pytest.mark.skipif(C_CHUNK is None, reason="_wire not built")
    ),
]


def test_the_c_step_is_built_and_used_where_make_test_runs() -> None:
    """`make test` installs a compiler and Python headers: a silent fallback
    to the slower step would go unnoticed in the benchmark otherwise."""
    if os.environ.get(wire.PURE_PYTHON_VARIABLE):
        assert not wire.ACCELERATED and "Python" in wire.STEP
        return
    assert C_CHUNK is not None, "shimmfa.shim.link._wire was not built by the install"
    assert wire.ACCELERATED and wire.chunk is C_CHUNK
    assert (_wire.READ_SIZE, _wire.ENTRY_SIZE) == (wire.READ_SIZE, ENTRY.size)


def nonblocking(fd: int) -> int:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    return fd


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    """(source read end, source write end, sink read end, sink write end)."""
    fds = [*os.pipe(), *os.pipe()]
    for fd in fds:
        nonblocking(fd)
    yield fds[0], fds[1], fds[2], fds[3]
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def entries(sink: bytearray) -> list[tuple[bytes, float, float, bytes]]:
    out, offset = [], 0
    while offset < len(sink):
        code, monotonic, wall, length = ENTRY.unpack_from(sink, offset)
        offset += ENTRY.size
        out.append((code, monotonic, wall, bytes(sink[offset : offset + length])))
        offset += length
    assert offset == len(sink)
    return out


def drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            piece = os.read(fd, 1 << 16)
        except BlockingIOError:
            return data
        if not piece:
            return data
        data += piece


@pytest.mark.parametrize("step", STEPS)
def test_a_chunk_is_recorded_with_its_times_and_written_whole(step, pipes) -> None:
    src, feed, out, dst = pipes
    os.write(feed, b"status\r")
    sink = bytearray(b"earlier")
    mono0 = time.monotonic() - 5.0
    wall_before, mono_before = time.time(), time.monotonic()
    assert step(src, dst, sink, IN, mono0) == 7
    wall_after, mono_after = time.time(), time.monotonic()
    assert drain(out) == b"status\r"
    assert sink[:7] == b"earlier"
    [(code, monotonic, wall, payload)] = entries(sink[7:])
    assert (code, payload) == (b"i", b"status\r")
    assert mono_before - mono0 <= monotonic <= mono_after - mono0
    assert wall_before <= wall <= wall_after


@pytest.mark.parametrize("step", STEPS)
def test_a_chunk_is_at_most_read_size_and_the_rest_waits(step, pipes) -> None:
    src, feed, out, dst = pipes
    data = os.urandom(wire.READ_SIZE + 1000)
    os.write(feed, data)
    sink = bytearray()
    assert step(src, dst, sink, OUT, 0.0) == wire.READ_SIZE
    assert step(src, dst, sink, OUT, 0.0) == 1000
    assert drain(out) == data
    assert [(e[0], e[3]) for e in entries(sink)] == [
        (b"o", data[: wire.READ_SIZE]),
        (b"o", data[wire.READ_SIZE :]),
    ]


@pytest.mark.parametrize("step", STEPS)
def test_without_a_sink_nothing_is_recorded(step, pipes) -> None:
    src, feed, out, dst = pipes
    os.write(feed, b"login:")
    assert step(src, dst, None, OUT, 0.0) == 6
    assert drain(out) == b"login:"


@pytest.mark.parametrize("step", STEPS)
def test_nothing_to_read_is_eagain_and_changes_nothing(step, pipes) -> None:
    src, _, out, dst = pipes
    sink = bytearray(b"x")
    assert step(src, dst, sink, IN, 0.0) == -errno.EAGAIN
    assert sink == b"x" and drain(out) == b""


@pytest.mark.parametrize("step", STEPS)
def test_end_of_file_is_zero(step, pipes) -> None:
    src, feed, _, dst = pipes
    os.close(feed)
    sink = bytearray()
    assert step(src, dst, sink, IN, 0.0) == 0
    assert sink == b""


@pytest.mark.parametrize("step", STEPS)
def test_a_pty_hangup_is_eio(step) -> None:
    master, slave = os.openpty()
    nonblocking(master)
    os.close(slave)
    try:
        assert step(master, -1, bytearray(), IN, 0.0) == -errno.EIO
    finally:
        os.close(master)


@pytest.mark.parametrize("step", STEPS)
def test_a_full_outlet_gets_the_bytes_back_to_queue_and_they_are_recorded(step, pipes) -> None:
    src, feed, out, dst = pipes
    filled = 0
    while True:  # fill the outlet pipe
        try:
            filled += os.write(dst, b"\0" * 4096)
        except BlockingIOError:
            break
    os.write(feed, b"reply\r\n")
    sink = bytearray()
    assert step(src, dst, sink, OUT, 0.0) == (7, b"reply\r\n", 0)
    assert [e[3] for e in entries(sink)] == [b"reply\r\n"]
    assert len(drain(out)) == filled


@pytest.mark.parametrize("step", STEPS)
def test_no_outlet_means_queue_everything(step, pipes) -> None:
    src, feed, out, _ = pipes
    os.write(feed, b"abc")
    sink = bytearray()
    assert step(src, -1, sink, IN, 0.0) == (3, b"abc", 0)
    assert [e[3] for e in entries(sink)] == [b"abc"] and drain(out) == b""


@pytest.mark.parametrize("step", STEPS)
def test_a_failed_write_is_reported_and_the_bytes_were_recorded_first(step, pipes) -> None:
    src, feed, out, dst = pipes
    os.close(out)  # the other side is gone: EPIPE (Python ignores SIGPIPE)
    os.write(feed, b"last words")
    sink = bytearray()
    assert step(src, dst, sink, IN, 0.0) == (10, b"", errno.EPIPE)
    assert [e[3] for e in entries(sink)] == [b"last words"]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("sink", "code", "error"),
    [(b"", IN, TypeError), (bytearray(), 256, ValueError), (bytearray(), -1, ValueError)],
)
def test_bad_arguments_raise_and_the_bytes_stay_unread(step, pipes, sink, code, error) -> None:
    src, feed, out, dst = pipes
    os.write(feed, b"keep")
    with pytest.raises(error):
        step(src, dst, sink, code, 0.0)
    assert step(src, dst, None, IN, 0.0) == 4
    assert drain(out) == b"keep"


@pytest.mark.parametrize("step", STEPS)
def test_negative_descriptors_other_than_no_outlet_are_refused(step, pipes) -> None:
    src, feed, out, dst = pipes
    os.write(feed, b"keep")
    for bad_src, bad_dst in ((-1, dst), (src, -2)):
        with pytest.raises(ValueError):
            step(bad_src, bad_dst, None, IN, 0.0)
    assert step(src, dst, None, IN, 0.0) == 4
    assert drain(out) == b"keep"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=9000), min_size=1, max_size=6))
def test_any_traffic_is_recorded_and_relayed_byte_exact_by_both_steps(writes) -> None:
    for step in (wire.chunk_python, C_CHUNK):
        if step is None:
            continue
        fds = [nonblocking(fd) for fd in (*os.pipe(), *os.pipe())]
        src, feed, out, dst = fds
        try:
            fcntl.fcntl(dst, 1031, 1 << 20)  # F_SETPIPE_SZ: room for all of it
            sink, relayed = bytearray(), b""
            for data in writes:
                os.write(feed, data)
                while (result := step(src, dst, sink, OUT, 0.0)) != -errno.EAGAIN:
                    assert isinstance(result, int) and 0 < result <= wire.READ_SIZE
                relayed += drain(out)
            recorded = entries(sink)
            assert b"".join(e[3] for e in recorded) == b"".join(writes) == relayed
            assert all(e[0] == b"o" and 0 < len(e[3]) <= wire.READ_SIZE for e in recorded)
        finally:
            for fd in fds:
                os.close(fd)
