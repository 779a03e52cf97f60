"""The measuring ends of the relay benchmark, each run as its own process.

`relay_bench.py` starts these with an inherited PTY file descriptor, so the
process that times a transfer never shares a GIL with the process at the other
end, nor with the relay. Each prints one JSON line on stdout.

    ping   COUNT WARMUP BLOCK FD...  write 1 byte, wait for its echo; COUNT times
                                   per fd, BLOCK at a time on each fd in turn
    sink   FD NBYTES [--crc]         read exactly NBYTES; prints "ready" first
    source FD NBYTES                 write NBYTES of the benchmark pattern

`raw_pty_pair` makes the PTY pairs the benchmarks run the relays on.

Rules: blocking I/O with large reads and writes (a PTY hands out at most
4095 bytes per read); times are CLOCK_MONOTONIC nanoseconds, which every
process on the machine shares, so the source's start and the sink's end can
be subtracted; the sink fails loudly on any byte too many, and with `--crc`
on any byte that differs from the pattern.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import termios
import time
import tty
import zlib
from pathlib import Path

CHUNK = 1 << 16
PATTERN_SEED = 0x5EED
PING_BYTES = b"abcdefghijklmnopqrstuvwxyz"


def raw_pty_pair(link: Path) -> int:
    """A PTY pair with its slave in raw mode behind the symlink `link` (the
    path a relay opens); the master fd, for the caller to close."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave, termios.TCSANOW)
        link.symlink_to(os.ttyname(slave))
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return master


def pattern() -> bytes:
    """The 64 KiB block every bulk transfer repeats (all 256 byte values)."""
    return random.Random(PATTERN_SEED).randbytes(CHUNK)


def expected_crc(nbytes: int) -> int:
    block = pattern()
    crc = 0
    whole, rest = divmod(nbytes, CHUNK)
    for _ in range(whole):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(block[:rest], crc)


def _emit(result: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def ping(fds: list[int], count: int, warmup: int, block: int) -> None:
    """`count` pings on each fd, in turns of `block` pings per fd, the order of
    the fds rotating every turn, so machine noise hits them all alike."""
    for fd in fds:
        os.set_blocking(fd, True)
    samples: dict[int, list[int]] = {fd: [] for fd in fds}
    write, read, clock = os.write, os.read, time.perf_counter_ns
    sent = 0
    for turn in range(-(-(warmup + count) // block)):
        shift = turn % len(fds)
        for fd in fds[shift:] + fds[:shift]:
            times = samples[fd]
            for _ in range(block):
                byte = PING_BYTES[sent % len(PING_BYTES)]
                sent += 1
                started = clock()
                write(fd, bytes((byte,)))
                echoed = read(fd, 64)
                elapsed = clock() - started
                if echoed != bytes((byte,)):
                    raise SystemExit(f"ping on fd {fd}: sent {byte!r}, got back {echoed!r}")
                times.append(elapsed)
    _emit({str(fd): times[warmup : warmup + count] for fd, times in samples.items()})


def sink(fd: int, nbytes: int, crc: bool) -> None:
    os.set_blocking(fd, True)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    received = 0
    checksum = 0
    reads = 0
    readinto = os.readv
    _emit({"ready": True})
    while received < nbytes:
        got = readinto(fd, [view])
        if got == 0:
            raise SystemExit(f"sink: end of file after {received} of {nbytes} bytes")
        if received == 0:
            first = time.monotonic_ns()
        received += got
        reads += 1
        if crc:
            checksum = zlib.crc32(view[:got], checksum)
    finished = time.monotonic_ns()
    if received != nbytes:
        raise SystemExit(f"sink: got {received} bytes, expected {nbytes}")
    _emit(
        {
            "received": received,
            "first_ns": first,
            "end_ns": finished,
            "reads": reads,
            "crc": checksum if crc else None,
        }
    )


def source(fd: int, nbytes: int) -> None:
    os.set_blocking(fd, True)
    block = memoryview(pattern())
    write = os.write
    sent = 0
    started = time.monotonic_ns()
    while sent < nbytes:
        sent += write(fd, block[: min(CHUNK, nbytes - sent)])
    _emit({"sent": sent, "start_ns": started, "end_ns": time.monotonic_ns()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("ping")
    p.add_argument("count", type=int)
    p.add_argument("warmup", type=int)
    p.add_argument("block", type=int)
    p.add_argument("fds", type=int, nargs="+")
    s = sub.add_parser("sink")
    s.add_argument("fd", type=int)
    s.add_argument("nbytes", type=int)
    s.add_argument("--crc", action="store_true")
    o = sub.add_parser("source")
    o.add_argument("fd", type=int)
    o.add_argument("nbytes", type=int)
    args = parser.parse_args()
    if args.role == "ping":
        ping(args.fds, args.count, args.warmup, args.block)
    elif args.role == "sink":
        sink(args.fd, args.nbytes, args.crc)
    else:
        source(args.fd, args.nbytes)


if __name__ == "__main__":
    main()
