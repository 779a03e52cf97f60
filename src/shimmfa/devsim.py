"""A simulated legacy service console, for the demo and the tests.

It behaves like the service port of an old infusion pump: a hard-coded
`login:`/`password:` prompt (user `service`, password `vip3200`), then a
small menu: `status`, `log N` (streams N lines), `echo TEXT`, `help`,
`logout`. It echoes what is typed (not the password), accepts CR, LF or CRLF
as Enter, and keeps running when the other side of its port goes away.
"""

from __future__ import annotations

import errno
import os
import select
import termios
import tty
from collections.abc import Callable
from pathlib import Path

USER = b"service"
PASSWORD = b"vip3200"
GREETING = b"\r\nExampleMed VIP-3200 volumetric infusion pump, service console v3.2\r\n"
MENU = b"commands: status | log N | echo TEXT | help | logout\r\n"
MAX_LOG_LINES = 1_000_000


class Console:
    """The console's dialogue, byte in -> bytes out (no I/O here)."""

    def __init__(self) -> None:
        self.stage = "login"
        self._line = bytearray()
        self._after_cr = False
        self._user = b""

    def greet(self) -> bytes:
        return GREETING + b"login: "

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for byte in data:
            if byte == 0x0A and self._after_cr:
                self._after_cr = False
                continue
            self._after_cr = byte == 0x0D
            if byte in (0x0D, 0x0A):
                line, self._line = bytes(self._line), bytearray()
                out.append(b"\r\n")
                out.extend(self._enter(line.strip()))
            elif byte in (0x08, 0x7F):
                if self._line:
                    self._line.pop()
                    if self.stage != "password":
                        out.append(b"\b \b")
            elif len(self._line) < 1024:
                self._line.append(byte)
                if self.stage != "password":
                    out.append(bytes([byte]))
        return out

    def _enter(self, line: bytes) -> list[bytes]:
        if self.stage == "login":
            if not line:
                return [b"login: "]
            self._user, self.stage = line, "password"
            return [b"password: "]
        if self.stage == "password":
            if self._user == USER and line == PASSWORD:
                self.stage = "menu"
                return [b"Login OK. Service mode.\r\n", MENU, b"svc> "]
            self.stage = "login"
            return [b"Login incorrect\r\nlogin: "]
        return [*self._command(line), b"svc> " if self.stage == "menu" else b"login: "]

    def _command(self, line: bytes) -> list[bytes]:
        word, _, arg = line.partition(b" ")
        if word == b"":
            return []
        if word == b"status":
            return [
                b"pump: VIP-3200 sn 00417 firmware 3.2.7\r\n",
                b"state: RUNNING  rate: 12.5 ml/h  volume infused: 118.0 ml\r\n",
                b"battery: 87%  occlusion: none  door: closed\r\n",
            ]
        if word == b"log":
            try:
                count = int(arg)
            except ValueError:
                return [b"usage: log N\r\n"]
            count = max(0, min(count, MAX_LOG_LINES))
            return [
                b"%06d 2026-11-23T10:%02d:%02d INFO rate=12.5ml/h pressure=%03dmmHg\r\n"
                % (n, n // 60 % 60, n % 60, 80 + n % 40)
                for n in range(1, count + 1)
            ] + [b"end of log\r\n"]
        if word == b"echo":
            return [arg + b"\r\n"]
        if word == b"help":
            return [MENU]
        if word in (b"logout", b"exit"):
            self.stage = "login"
            return [b"Logged out.\r\n"]
        return [b"unknown command: " + word[:40] + b"\r\n"]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[written:]


def serve(
    fd: int,
    *,
    record: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Serve the console on `fd` until `should_stop()` or an interrupt."""
    console = Console()
    recording = record.open("ab", buffering=0) if record else None
    os.set_blocking(fd, False)
    greeted = False
    try:
        while not should_stop():
            readable, _, _ = select.select([fd], [], [], 0.1)
            if not readable:
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:  # the other side is gone for now; it may come back
                select.select([], [], [], 0.1)
                continue
            if recording is not None:
                recording.write(data)
            if not greeted:
                greeted = True
                _write_all(fd, console.greet())
            for chunk in console.feed(data):
                _write_all(fd, chunk)
    finally:
        if recording is not None:
            recording.close()


def open_port(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    if os.isatty(fd):
        tty.setraw(fd, termios.TCSANOW)
    return fd
