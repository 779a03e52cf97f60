"""`wire.spin_c`, the relaying wait the daemon's selector uses when the C
step is built: on real pipes and a real epoll, every byte it moves is
recorded before it is written, it hands back to Python everything that is
not plain relaying, and it releases the interpreter lock while it waits."""

from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shimmfa.shim.link import wire
from shimmfa.shim.link.wire import IN, OUT

from .test_wire import drain, entries, nonblocking

pytestmark = pytest.mark.skipif(
    wire.spin_c is None, reason="the C wait is not in use (not built, or SHIMMFA_PURE_PYTHON set)"
)
BATCH = 64 << 10
SHORT = 0.01  # a wait that is meant to end with nothing to do


def spin(
    epoll: select.epoll,
    routes: tuple[tuple[int, int, int], ...],
    sink: bytearray | None,
    timeout: float = SHORT,
    batch: int = BATCH,
) -> wire.SpinResult:
    assert wire.spin_c is not None
    return wire.spin_c(epoll.fileno(), timeout, routes, sink, 0.0, batch)


@pytest.fixture
def wires() -> Iterator[tuple[select.epoll, list[int]]]:
    """An epoll and two nonblocking pipes: [src, feed, out, dst, src2, feed2, out2, dst2]."""
    fds = [*os.pipe(), *os.pipe(), *os.pipe(), *os.pipe()]
    for fd in fds:
        nonblocking(fd)
    epoll = select.epoll()
    epoll.register(fds[0], select.EPOLLIN)
    epoll.register(fds[4], select.EPOLLIN)
    yield epoll, fds
    epoll.close()
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def test_both_directions_are_relayed_and_recorded_without_python(wires) -> None:
    epoll, (src, feed, out, dst, src2, feed2, out2, dst2) = wires
    os.write(feed, b"status\r")
    os.write(feed2, b"OK 42\r\n")
    sink = bytearray()
    events, moved, last_entry, stop = spin(epoll, ((src, dst, IN), (src2, dst2, OUT)), sink)
    assert (events, moved, stop) == ([], (7, 7), None)
    assert drain(out) == b"status\r" and drain(out2) == b"OK 42\r\n"
    recorded = entries(sink)
    assert sorted((e[0], e[3]) for e in recorded) == [(b"i", b"status\r"), (b"o", b"OK 42\r\n")]
    assert last_entry == len(sink) - wire.ENTRY.size - 7


def test_an_event_on_another_fd_is_handed_back_with_its_mask(wires) -> None:
    epoll, (src, feed, out, dst, src2, feed2, *_) = wires
    os.write(feed2, b"x")  # src2 is registered, but not a route here
    os.write(feed, b"abc")
    events, moved, _, stop = spin(epoll, ((src, dst, IN),), bytearray(), timeout=-1)
    assert events == [(src2, select.EPOLLIN)]
    assert moved == (3,) and stop is None and drain(out) == b"abc"


def test_a_hang_up_is_left_to_python_and_nothing_is_read(wires) -> None:
    epoll, (src, feed, out, dst, *_) = wires
    os.write(feed, b"last words")
    os.close(feed)
    sink = bytearray()
    events, moved, last_entry, stop = spin(epoll, ((src, dst, IN),), sink, timeout=-1)
    assert events == [(src, select.EPOLLIN | select.EPOLLHUP)]
    assert (moved, last_entry, stop, sink) == ((0,), -1, None, bytearray())
    assert os.read(src, 100) == b"last words"


def test_a_full_outlet_stops_with_the_rest_and_the_bytes_recorded(wires) -> None:
    epoll, (src, feed, out, dst, *_) = wires
    while True:  # fill the outlet
        try:
            os.write(dst, b"\0" * 65536)
        except BlockingIOError:
            break
    os.write(feed, b"queued")
    sink = bytearray()
    events, moved, last_entry, stop = spin(epoll, ((src, dst, IN),), sink, timeout=-1)
    assert (events, moved, last_entry) == ([], (0,), 0)
    assert stop == (0, (6, b"queued", 0))
    assert [(e[0], e[3]) for e in entries(sink)] == [(b"i", b"queued")]


def test_a_route_without_outlet_records_and_returns_everything(wires) -> None:
    epoll, (src, feed, out, dst, src2, feed2, out2, dst2) = wires
    os.write(feed2, b"device")
    events, moved, _, stop = spin(epoll, ((src, dst, IN), (src2, -1, OUT)), bytearray())
    assert (events, moved, stop) == ([], (0, 0), (1, (6, b"device", 0)))


def test_a_failed_write_stops_with_its_errno(wires) -> None:
    epoll, (src, feed, out, dst, *_) = wires
    os.close(out)
    os.write(feed, b"to nobody")
    _, moved, _, stop = spin(epoll, ((src, dst, IN),), bytearray(), timeout=-1)
    assert moved == (0,) and stop == (0, (9, b"", errno.EPIPE))


def test_a_full_batch_returns_and_leaves_the_rest_readable(wires) -> None:
    epoll, (src, feed, out, dst, *_) = wires
    os.write(feed, b"a" * 3 * wire.READ_SIZE)
    sink = bytearray()
    _, moved, _, stop = spin(epoll, ((src, dst, IN),), sink, timeout=-1, batch=wire.READ_SIZE)
    assert moved == (wire.READ_SIZE,) and stop is None
    # Already full: not one more chunk, not even a wait.
    assert spin(epoll, ((src, dst, IN),), sink, timeout=-1, batch=1) == ([], (0,), -1, None)
    assert len(drain(out)) == wire.READ_SIZE
    assert len(drain(src)) == 2 * wire.READ_SIZE


def test_with_nothing_to_do_it_returns_at_the_timeout(wires) -> None:
    epoll, (src, feed, out, dst, *_) = wires
    assert spin(epoll, ((src, dst, IN),), bytearray(), timeout=0.0) == ([], (0,), -1, None)
    assert spin(epoll, ((src, dst, IN),), None, timeout=SHORT) == ([], (0,), -1, None)


def test_the_wait_lets_other_threads_run(wires) -> None:
    """Another thread writes while spin waits with no limit: were the lock
    held, the writer could not run and this would never return."""
    epoll, (src, feed, out, dst, src2, feed2, *_) = wires

    def later() -> None:
        os.write(feed, b"from another thread")
        os.write(feed2, b"!")  # a non-route event: spin returns

    writer = threading.Timer(0.05, later)
    writer.start()
    events, moved, _, _ = spin(epoll, ((src, dst, IN),), bytearray(), timeout=-1)
    writer.join()
    if not moved[0]:  # both writes landed in one wait, or the route came second
        _, moved, _, _ = spin(epoll, ((src, dst, IN),), bytearray())
    assert events == [(src2, select.EPOLLIN)]
    assert drain(out) == b"from another thread"


@pytest.mark.parametrize(
    "routes, error",
    [
        ((1, 2, IN), TypeError),  # not a tuple of routes
        (((1, 2),), TypeError),
        (((-1, 2, IN),), ValueError),
        (((1, 2, 256),), ValueError),
        (((1, 2, IN),) * 5, TypeError),
    ],
)
def test_bad_routes_are_refused_before_anything_is_read(wires, routes, error) -> None:
    epoll, (src, feed, *_) = wires
    os.write(feed, b"kept")
    assert wire.spin_c is not None
    with pytest.raises(error):
        wire.spin_c(epoll.fileno(), 0.0, routes, bytearray(), 0.0, BATCH)
    with pytest.raises(TypeError):
        wire.spin_c(epoll.fileno(), 0.0, ((src, -1, IN),), b"not a bytearray", 0.0, BATCH)
    assert os.read(src, 100) == b"kept"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3 * wire.READ_SIZE), min_size=1, max_size=8))
def test_traffic_is_relayed_and_recorded_byte_exact(writes: list[bytes]) -> None:
    fds = [*os.pipe(), *os.pipe()]
    for fd in fds:
        nonblocking(fd)
    src, feed, out, dst = fds
    epoll = select.epoll()
    epoll.register(src, select.EPOLLIN)
    try:
        sink, relayed = bytearray(), b""
        for data in writes:
            os.write(feed, data)
            while True:
                _, moved, _, stop = spin(epoll, ((src, dst, OUT),), sink, timeout=0.0)
                assert stop is None
                relayed += drain(out)
                if not moved[0]:
                    break
        assert relayed == b"".join(writes)
        assert b"".join(e[3] for e in entries(sink)) == relayed
        assert {e[0] for e in entries(sink)} == {b"o"}
    finally:
        epoll.close()
        for fd in fds:
            os.close(fd)
