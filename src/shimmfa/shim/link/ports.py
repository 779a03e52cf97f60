"""The relay's two serial ports: opening them, reopening after a hang-up,
watching their carrier lines, and the order things happen in when one side
goes away.

Rules:
- A port that cannot be opened (missing, busy, refused) is retried every
  `REOPEN_RETRY` seconds; why it waits is logged once per distinct reason.
- On a real tty a DCD or DSR line dropping from high to low is a hang-up,
  polled every `CARRIER_POLL` seconds; the device side's lines also go to
  `on_device_carrier` (the modem tamper sensor).
- The order of a hang-up is the listener's contract. Technician side: the
  listener hears it first (`technician_lost`: the session ends as
  `technician_hangup` while the port is still there), then the port is
  closed and reopened. Device side: the port is closed first (no byte more
  reaches a device that went away), then the listener hears it
  (`device_lost`: the session ends, the gate locks, the technician is told).
- A write that fails on a side is that side hanging up.
- Input that waited at the technician's port before it was opened (typed
  while the daemon was down, or before the banner) is discarded at open,
  before the banner is shown, and counted in the log: only what is typed
  after the banner can log in.
- Every reader change goes through `Readers`, which keeps the loop and the
  selector's fast path in step.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import struct
import termios
from collections.abc import Callable
from typing import Protocol

from shimmfa.errors import ShimMfaError
from shimmfa.shim.link.outlet import HangupError, Outlet
from shimmfa.shim.link.passthrough import Readers
from shimmfa.shim.link.serialport import Endpoint
from shimmfa.shim.link.wire import READ_SIZE

__all__ = [
    "CARRIER_POLL",
    "REOPEN_RETRY",
    "PortListener",
    "Ports",
    "discard_pending",
    "read_once",
]

log = logging.getLogger("shimmfa.relay")

CARRIER_POLL = 0.25
REOPEN_RETRY = 0.2

TECHNICIAN, DEVICE = 0, 1


class PortListener(Protocol):
    """What the session side does when a port comes or goes."""

    def technician_opened(self) -> None: ...

    def device_opened(self) -> None: ...

    def technician_lost(self) -> None:
        """Before the technician's port is closed."""
        ...

    def device_lost(self) -> None:
        """After the device's port is closed."""
        ...


def read_once(fd: int) -> bytes | None:
    """One read of `fd`; None if nothing was there. Raises HangupError."""
    try:
        data = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.ENXIO, errno.EBADF, errno.ENODEV):
            raise HangupError(exc.strerror) from None
        raise
    if not data:
        raise HangupError("end of file")
    return data


def discard_pending(fd: int) -> int:
    """Throw away the input waiting at `fd`: read what is there, then flush
    the rest (tcflush also drops what the kernel has not handed to the line
    discipline yet). How many bytes were seen; the flush may drop more."""
    seen = 0
    try:
        while data := os.read(fd, READ_SIZE):
            seen += len(data)
    except BlockingIOError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EIO, errno.ENXIO):
            raise
    try:
        raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        seen += struct.unpack("i", raw)[0]
        termios.tcflush(fd, termios.TCIFLUSH)
    except (OSError, termios.error):
        pass  # not a tty: nothing queued in a line discipline
    return seen


class Ports:
    """The technician's and the device's endpoints and their writers."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        readers: Readers,
        open_technician: Callable[[], Endpoint],
        open_device: Callable[[], Endpoint],
        listener: PortListener,
        *,
        guarded: Callable[[Callable[[], None]], Callable[[], None]],
        on_ready: Callable[[], None] | None = None,
        on_device_carrier: Callable[[tuple[bool, bool] | None], None] | None = None,
    ) -> None:
        self._loop = loop
        self._readers = readers
        self._openers = (open_technician, open_device)
        self._listener = listener
        self._guarded = guarded
        self._on_ready = on_ready
        self._on_device_carrier = on_device_carrier
        self.tech: Endpoint | None = None
        self.dev: Endpoint | None = None
        self.tech_out: Outlet | None = None
        self.dev_out: Outlet | None = None
        self.closed = False
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._carrier: dict[int, tuple[bool, bool]] = {}
        self._waiting_logged: dict[str, str] = {}
        self._carrier_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Open the device side, then the technician's; poll the carrier."""
        self._guarded(self._connect_device)()
        self._guarded(self._connect_technician)()
        self._carrier_timer = self._loop.call_later(CARRIER_POLL, self._guarded(self._poll_carrier))

    def close(self) -> None:
        """Close both ports for good (shutdown, fail safe)."""
        self.closed = True
        for timer in (*self._retries.values(), self._carrier_timer):
            if timer is not None:
                timer.cancel()
        for endpoint in (self.tech, self.dev):
            if endpoint is not None and endpoint.fd >= 0:
                self._readers.remove(endpoint.fd)
                self._loop.remove_writer(endpoint.fd)
                endpoint.close()
        self.tech = self.dev = None

    def cut_device(self) -> None:
        """Close the device side at once, nothing more (the fail safe)."""
        if self.dev is not None:
            self._readers.remove(self.dev.fd)
            self._loop.remove_writer(self.dev.fd)
            self.dev.close()
            self.dev = None

    def stop_writers(self) -> None:
        """Drop whatever waits to be written to either side (tamper)."""
        for outlet in (self.dev_out, self.tech_out):
            if outlet is not None:
                outlet.stop()

    # -- opening ------------------------------------------------------------

    def _try_open(self, side: int) -> Endpoint | None:
        """Open a side; None (and a log line, once per distinct reason) while
        it cannot be opened. The caller retries."""
        name = "technician" if side == TECHNICIAN else "device"
        try:
            endpoint = self._openers[side]()
        except FileNotFoundError as exc:
            why = f"waiting for the {name} port {exc.filename} to appear"
        except (OSError, ShimMfaError) as exc:
            why = f"cannot open the {name} port ({exc}); retrying"
        else:
            why = ""
        if why:
            if self._waiting_logged.get(name) != why:
                self._waiting_logged[name] = why
                log.log(logging.WARNING if "retrying" in why else logging.INFO, "%s", why)
            return None
        self._waiting_logged.pop(name, None)
        log.info("%s port %s open (%s)", name, endpoint.path, "pty" if endpoint.is_pty else "tty")
        return endpoint

    def _retry(self, side: int) -> None:
        connect = self._connect_technician if side == TECHNICIAN else self._connect_device
        self._retries[side] = self._loop.call_later(REOPEN_RETRY, self._guarded(connect))

    def _connect_technician(self) -> None:
        self._connect(TECHNICIAN)

    def _connect_device(self) -> None:
        self._connect(DEVICE)

    def _connect(self, side: int) -> None:
        if self.closed:
            return
        endpoint = self._try_open(side)
        if endpoint is None:
            self._retry(side)
            return
        if side == TECHNICIAN:
            stale = discard_pending(endpoint.fd)
            if stale:
                log.warning(
                    "technician port: discarded %d bytes that waited before the banner", stale
                )
            self.tech = endpoint
            self.tech_out = Outlet(self._loop, endpoint.fd, self._technician_write_failed)
            self._listener.technician_opened()
        else:
            self.dev = endpoint
            self.dev_out = Outlet(self._loop, endpoint.fd, self._device_write_failed)
            self._listener.device_opened()
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self._on_ready is not None and self.tech is not None and self.dev is not None:
            ready, self._on_ready = self._on_ready, None
            ready()

    # -- hanging up -----------------------------------------------------------

    def technician_gone(self, why: str) -> None:
        log.info("technician side hung up (%s)", why)
        self._listener.technician_lost()
        if self.tech is not None:
            self._readers.remove(self.tech.fd)
            if self.tech_out is not None:
                self.tech_out.stop()
            self.tech.close()
            self.tech = None
        self._carrier.pop(TECHNICIAN, None)
        self._retry(TECHNICIAN)

    def device_gone(self, why: str) -> None:
        log.warning("device side hung up (%s)", why)
        if self.dev is not None:
            self._readers.remove(self.dev.fd)
            if self.dev_out is not None:
                self.dev_out.stop()
            self.dev.close()
            self.dev = None
        self._carrier.pop(DEVICE, None)
        self._listener.device_lost()
        self._retry(DEVICE)

    def _technician_write_failed(self, exc: OSError) -> None:
        if self.tech is not None:  # not already handled by the reader
            self.technician_gone(f"write failed: {exc.strerror}")

    def _device_write_failed(self, exc: OSError) -> None:
        if self.dev is not None:
            self.device_gone(f"write failed: {exc.strerror}")

    def _poll_carrier(self) -> None:
        """On real ttys a DCD or DSR line dropping from high to low is a hang-up."""
        if self.closed:
            return
        for side, endpoint in ((TECHNICIAN, self.tech), (DEVICE, self.dev)):
            lines = endpoint.carrier() if endpoint is not None else None
            if side == DEVICE and self._on_device_carrier is not None:
                self._on_device_carrier(lines)
            if lines is None:
                continue
            before = self._carrier.get(side, (False, False))
            self._carrier[side] = lines
            if (before[0] and not lines[0]) or (before[1] and not lines[1]):
                if side == TECHNICIAN:
                    self.technician_gone("DCD/DSR dropped")
                else:
                    self.device_gone("DCD/DSR dropped")
        self._carrier_timer = self._loop.call_later(CARRIER_POLL, self._guarded(self._poll_carrier))
