"""Open the two serial endpoints as non-blocking file descriptors.

Rules:
- A PTY (a `/dev/pts/N` slave, or a socat link to one) is opened directly and
  put in raw mode: no echo, no line editing, no CR/LF translation.
- Anything else is a real tty, configured by pyserial from the config (baud,
  framing, flow control), opened exclusively. The technician never changes
  baud rate or framing.
- On the technician side BREAK and bytes with framing/parity errors are
  ignored by the driver (IGNBRK, IGNPAR), so they never reach the device.
- A missing path raises `FileNotFoundError` (the daemon retries); any other
  failure raises `SerialPortError` with what to do.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import tty
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shimmfa.errors import SerialPortError

if TYPE_CHECKING:
    import serial

    from shimmfa.shim.settings import SerialSection

_PTY_MAJORS = range(136, 144)


@dataclass(slots=True)
class Endpoint:
    path: str
    fd: int
    is_pty: bool
    port: serial.Serial | None = None

    def close(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        if self.port is not None:
            self.port.close()
        else:
            os.close(fd)

    def carrier(self) -> tuple[bool, bool] | None:
        """(DCD, DSR) of a real tty; None for a PTY or when unknown."""
        if self.is_pty or self.fd < 0:
            return None
        try:
            packed = fcntl.ioctl(self.fd, termios.TIOCMGET, struct.pack("I", 0))
        except OSError:
            return None
        bits = struct.unpack("I", packed)[0]
        return bool(bits & termios.TIOCM_CAR), bool(bits & termios.TIOCM_DSR)


def is_pty(path: str) -> bool:
    st = os.stat(path)
    return (st.st_mode & 0o170000) == 0o020000 and os.major(st.st_rdev) in _PTY_MAJORS


def open_endpoint(path: str, settings: SerialSection, *, technician_side: bool) -> Endpoint:
    try:
        pty = is_pty(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SerialPortError(f"{path}: {exc.strerror}") from None
    endpoint = _open_pty(path) if pty else _open_tty(path, settings)
    if technician_side:
        _ignore_break(endpoint.fd)
    return endpoint


def _open_pty(path: str) -> Endpoint:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SerialPortError(_explain(path, exc)) from None
    try:
        tty.setraw(fd, termios.TCSANOW)
    except termios.error as exc:
        os.close(fd)
        raise SerialPortError(f"{path}: cannot set raw mode: {exc}") from None
    return Endpoint(path, fd, True)


def _open_tty(path: str, settings: SerialSection) -> Endpoint:
    import serial

    try:
        port = serial.Serial(
            port=path,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            rtscts=settings.rtscts,
            xonxoff=settings.xonxoff,
            timeout=0,
            exclusive=True,
        )
    except serial.SerialException as exc:
        cause = exc.__context__ if isinstance(exc.__context__, OSError) else None
        if isinstance(cause, FileNotFoundError):
            raise cause from None
        raise SerialPortError(_explain(path, cause or exc)) from None
    os.set_blocking(port.fileno(), False)
    return Endpoint(path, port.fileno(), False, port)


def _ignore_break(fd: int) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[0] |= termios.IGNBRK | termios.IGNPAR
    attrs[0] &= ~(termios.BRKINT | termios.PARMRK)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _explain(path: str, exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return (
            f"{path}: permission denied; add the service user to the 'dialout' group "
            "(sudo usermod -aG dialout USER, then log in again)"
        )
    if isinstance(exc, OSError) and exc.strerror:
        return f"{path}: {exc.strerror}"
    return f"{path}: {exc}"
