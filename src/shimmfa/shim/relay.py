"""The relay: moves bytes between the two serial endpoints on one asyncio loop.

Rules:
- The relay executes the gate's actions and decides nothing itself. While the
  gate is not OPEN, technician bytes go to the gate and device bytes are read
  and dropped (counted); nothing is written to the device.
- While OPEN, each side's reader writes straight to the other side: one read,
  one write, no copies, no waiting for the other direction. A slow reader on
  one side pauses reading from the other side (backpressure), never drops.
- Those two readers are the hot path (`pumps.Pump`): built once per
  session, per chunk they call `wire.chunk` (read, pack into the recorder's
  batch, write), then note the time and let the recorder count it. With a
  `PassThroughSelector` under the loop (the daemon's) they run straight from
  the selector, and with the C step built the selector's wait runs them in
  C (`pumps.spin`). Every reader change goes through
  `_add_reader`/`_remove_reader`, which keep the loop and the selector's
  fast path in step.
- A session ends on hang-up (EOF/EIO, or DCD/DSR dropping on a real tty),
  idle timeout, max duration or shutdown; then the gate shows its banner to
  the next technician (after reopening the port if it hung up).
- Fail safe: any unexpected exception in a callback stops all traffic, closes
  the device side, tells the technician `EMERGENCY STOP: internal_error`, and
  stops the loop with a non-zero exit code. Never pass-through.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from shimmfa.core import session as reasons
from shimmfa.core.gate import (
    Action,
    Authenticate,
    AuthFailed,
    Discarded,
    FormatRejected,
    ForwardToDevice,
    GateMachine,
    GateState,
    SendToTechnician,
    SessionClosed,
    SessionOpened,
)
from shimmfa.core.totp import AuthOutcome
from shimmfa.errors import ShimMfaError
from shimmfa.shim.outlet import HangupError, Outlet
from shimmfa.shim.passthrough import PassThroughSelector
from shimmfa.shim.pumps import Pump, Tap
from shimmfa.shim.serialport import Endpoint
from shimmfa.shim.wire import IN, OUT, READ_SIZE

log = logging.getLogger("shimmfa.relay")

TECH_BACKLOG_LIMIT = 1 << 20  # gate output nobody reads is dropped past this
CARRIER_POLL = 0.25
REOPEN_RETRY = 0.2
EXIT_FAIL_SAFE = 70
DEVICE_LOCK = "device"
DEVICE_NOTICE = "Device not connected; try again later."
STORAGE_LOCK = "storage"
STORAGE_NOTICE = "Storage exhausted; no new sessions can be recorded."
TAMPER_LOCK = "tamper"
STORAGE_CHECK = 10.0


class Authenticator(Protocol):
    def authenticate(self, technician_id: str, code: str) -> AuthOutcome: ...


class Sessions(Protocol):
    """Where sessions are opened, recorded and closed (the recorder)."""

    @property
    def tap(self) -> Tap: ...

    def start(self, technician_id: str) -> str:
        """A new session's ID; raises ShimMfaError when it cannot be recorded."""
        ...

    def record(self, direction: str, data: bytes) -> None:
        """Bytes relayed outside the pumps (typed ahead of the login)."""
        ...

    def end(self, session_id: str, reason: str) -> None: ...

    def problem(self) -> str | None:
        """Why no new session can be recorded now (storage), or None."""
        ...


class Relay:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        gate: GateMachine,
        authenticator: Authenticator,
        sessions: Sessions,
        open_technician: Callable[[], Endpoint],
        open_device: Callable[[], Endpoint],
        *,
        idle_timeout: float,
        max_duration: float,
        on_ready: Callable[[], None] | None = None,
        on_device_carrier: Callable[[tuple[bool, bool] | None], None] | None = None,
        pass_through: PassThroughSelector | None = None,
        on_auth_decided: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._fast = pass_through
        self._gate = gate
        self._auth = authenticator
        self._sessions = sessions
        self._open_tech = open_technician
        self._open_dev = open_device
        self._idle_timeout = idle_timeout
        self._max_duration = max_duration
        self._on_ready = on_ready
        self._on_device_carrier = on_device_carrier
        self._on_auth_decided = on_auth_decided
        self._record = sessions.record
        self._tech_pump: Pump | None = None
        self.tech: Endpoint | None = None
        self.dev: Endpoint | None = None
        self._tech_out: Outlet | None = None
        self._dev_out: Outlet | None = None
        self._last_activity = 0.0
        self._session_started = 0.0
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._session_timers: list[asyncio.TimerHandle] = []
        self._carrier: dict[int, tuple[bool, bool]] = {}
        self._reported_discards = 0
        self._waiting_logged: dict[str, str] = {}
        self.exit_code = 0
        self.stopped = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._loop.set_exception_handler(self._loop_exception)
        self._gate.lock(DEVICE_LOCK, DEVICE_NOTICE)
        self._guarded(self._connect_device)()
        self._guarded(self._connect_technician)()
        self._loop.call_later(CARRIER_POLL, self._guarded(self._poll_carrier))
        self._guarded(self._check_storage)()

    def shutdown(self) -> None:
        """SIGTERM/SIGINT: close the session, tell the technician, stop."""
        log.info("shutdown requested")
        self._execute(self._gate.end_session(reasons.SHUTDOWN))
        if self.tech is not None:
            self._best_effort_write(self.tech.fd, b"\r\nShim shutting down.\r\n")
        self._stop(0)

    def _stop(self, code: int) -> None:
        self.exit_code = code
        for timer in [*self._retries.values(), *self._session_timers]:
            timer.cancel()
        for endpoint in (self.tech, self.dev):
            if endpoint is not None and endpoint.fd >= 0:
                self._remove_reader(endpoint.fd)
                self._loop.remove_writer(endpoint.fd)
                endpoint.close()
        self.tech = self.dev = None
        self.stopped.set()

    # -- fail safe ----------------------------------------------------------

    def _guarded(self, callback: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                callback()
            except Exception as exc:
                self._fail_safe(exc)

        return guarded

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self._fail_safe(context.get("exception") or RuntimeError(context.get("message")))

    def _fail_safe(self, exc: BaseException) -> None:
        log.critical(
            "internal error in the data path; port closed to traffic (fail safe): %s: %s",
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        if self.dev is not None:
            self._remove_reader(self.dev.fd)
            self._loop.remove_writer(self.dev.fd)
            self.dev.close()
            self.dev = None
        try:
            actions = self._gate.emergency_stop(reasons.INTERNAL_ERROR)
            for action in actions:
                if isinstance(action, SessionClosed):
                    self._close_session(action)
                elif isinstance(action, SendToTechnician) and self.tech is not None:
                    self._best_effort_write(self.tech.fd, action.data)
        finally:
            self._stop(EXIT_FAIL_SAFE)

    def _add_reader(self, fd: int, reader: Callable[[], None]) -> None:
        """Read `fd` with `reader`, through the loop."""
        self._loop.add_reader(fd, reader)
        if self._fast is not None:
            self._fast.run_inline(fd, None)

    def _add_pump(self, fd: int, pump: Pump) -> None:
        """Read `fd` with a session's pump, straight from the selector if it can."""
        self._loop.add_reader(fd, pump)
        if self._fast is not None:
            self._fast.run_inline(fd, pump)

    def _remove_reader(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        if self._fast is not None:
            self._fast.run_inline(fd, None)

    @staticmethod
    def _best_effort_write(fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except OSError:
            pass

    # -- connecting the sides -------------------------------------------------

    def _try_open(self, opener: Callable[[], Endpoint], name: str) -> Endpoint | None:
        """Open a side; None (and a log line, once per distinct reason) while
        it cannot be opened. The caller retries."""
        try:
            endpoint = opener()
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

    def _retry(self, callback: Callable[[], None]) -> None:
        handle = self._loop.call_later(REOPEN_RETRY, self._guarded(callback))
        self._retries[callback.__name__] = handle

    def _connect_technician(self) -> None:
        if self.stopped.is_set():
            return
        endpoint = self._try_open(self._open_tech, "technician")
        if endpoint is None:
            self._retry(self._connect_technician)
            return
        self.tech = endpoint
        self._tech_out = Outlet(self._loop, endpoint.fd, self._technician_write_failed)
        self._add_reader(endpoint.fd, self._guarded(self._tech_readable_gate))
        self._execute(self._gate.banner())
        self._maybe_ready()

    def _connect_device(self) -> None:
        if self.stopped.is_set():
            return
        endpoint = self._try_open(self._open_dev, "device")
        if endpoint is None:
            self._retry(self._connect_device)
            return
        self.dev = endpoint
        self._dev_out = Outlet(self._loop, endpoint.fd, self._device_write_failed)
        self._add_reader(endpoint.fd, self._guarded(self._dev_readable_gate))
        self._execute(self._gate.unlock(DEVICE_LOCK))
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self._on_ready is not None and self.tech is not None and self.dev is not None:
            ready, self._on_ready = self._on_ready, None
            ready()

    def _technician_gone(self, why: str) -> None:
        log.info("technician side hung up (%s)", why)
        self._execute(self._gate.end_session(reasons.TECHNICIAN_HANGUP))
        if self.tech is not None:
            self._remove_reader(self.tech.fd)
            if self._tech_out is not None:
                self._tech_out.stop()
            self.tech.close()
            self.tech = None
        self._carrier.pop(0, None)
        self._retry(self._connect_technician)

    def _device_gone(self, why: str) -> None:
        log.warning("device side hung up (%s)", why)
        if self.dev is not None:
            self._remove_reader(self.dev.fd)
            if self._dev_out is not None:
                self._dev_out.stop()
            self.dev.close()
            self.dev = None
        self._carrier.pop(1, None)
        self._execute(self._gate.end_session(reasons.DEVICE_HANGUP))
        self._execute(self._gate.lock(DEVICE_LOCK, DEVICE_NOTICE))
        if self.tech is not None and self._tech_out is not None:
            self._execute(self._gate.banner())
        self._retry(self._connect_device)

    def _technician_write_failed(self, exc: OSError) -> None:
        if self.tech is not None:  # not already handled by the reader
            self._technician_gone(f"write failed: {exc.strerror}")

    def _device_write_failed(self, exc: OSError) -> None:
        if self.dev is not None:
            self._device_gone(f"write failed: {exc.strerror}")

    def _poll_carrier(self) -> None:
        """On real ttys a DCD or DSR line dropping from high to low is a hang-up."""
        if self.stopped.is_set():
            return
        for index, endpoint in enumerate((self.tech, self.dev)):
            lines = endpoint.carrier() if endpoint is not None else None
            if index == 1 and self._on_device_carrier is not None:
                self._on_device_carrier(lines)
            if lines is None:
                continue
            before = self._carrier.get(index, (False, False))
            self._carrier[index] = lines
            if (before[0] and not lines[0]) or (before[1] and not lines[1]):
                if index == 0:
                    self._technician_gone("DCD/DSR dropped")
                else:
                    self._device_gone("DCD/DSR dropped")
        self._loop.call_later(CARRIER_POLL, self._guarded(self._poll_carrier))

    # -- reading while the gate is closed -----------------------------------

    def _read(self, fd: int) -> bytes | None:
        """One read; None if nothing was there. Raises HangupError."""
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

    def _tech_readable_gate(self) -> None:
        if self.tech is None:
            return
        try:
            data = self._read(self.tech.fd)
        except HangupError as why:
            self._technician_gone(str(why))
            return
        if data:
            self._execute(self._gate.receive(data, time.monotonic()))

    def _dev_readable_gate(self) -> None:
        if self.dev is None:
            return
        try:
            data = self._read(self.dev.fd)
        except HangupError as why:
            self._device_gone(str(why))
            return
        if data:
            self._gate.device_output(data)

    # -- executing gate actions -------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendToTechnician):
                self._send_technician(action.data)
            elif isinstance(action, ForwardToDevice):
                if self._gate.state is not GateState.OPEN or self._dev_out is None:
                    raise RuntimeError("ForwardToDevice outside an open session")
                self._record("in", action.data)
                if not self._dev_out.write(action.data) and self.tech is not None:
                    if self._tech_pump is None:
                        raise RuntimeError("ForwardToDevice before the session's readers")
                    self._pause(self.tech, self._tech_pump)
            elif isinstance(action, Authenticate):
                self._authenticate(action)
            elif isinstance(action, SessionOpened):
                self._open_session(action)
            elif isinstance(action, SessionClosed):
                self._close_session(action)
            elif isinstance(action, AuthFailed):
                log.warning(
                    "auth failure technician=%r result=%s detail=%s backoff=%.0fs",
                    action.technician_id[:64],
                    action.result.value,
                    action.detail,
                    action.backoff_seconds,
                )
            elif isinstance(action, FormatRejected):
                log.info("login line rejected: %s", action.reason)
            elif isinstance(action, Discarded):
                log.debug("discarded %d technician bytes (%s)", action.nbytes, action.reason)

    def _send_technician(self, data: bytes) -> None:
        out = self._tech_out
        if out is None or self.tech is None:
            return
        if len(out.backlog) > TECH_BACKLOG_LIMIT:
            log.warning(
                "technician side is not reading; dropped %d bytes of gate output", len(data)
            )
            return
        out.write(data)

    def _authenticate(self, request: Authenticate) -> None:
        """Decide `request`, then the login lines typed behind it, in a loop:
        the gate asks for the next one as the last action of `auth_done`.
        Recursing instead (one level per line) let a paste of a few hundred
        short lines exhaust the stack and fail-safe stop the shim."""
        self._check_storage(reschedule=False)
        if STORAGE_LOCK in self._gate.locks:
            return  # the gate now shows "Storage exhausted"; the code is not spent
        pending: Authenticate | None = request
        while pending is not None:
            started = time.perf_counter()
            outcome = self._auth.authenticate(pending.technician_id, pending.code)
            session_id: str | None = None
            if outcome.authenticated:
                try:
                    session_id = self._sessions.start(outcome.technician_id)
                except ShimMfaError as exc:
                    log.error("session for %s refused: %s", outcome.technician_id, exc)
            log.debug("auth decision in %.2f ms", (time.perf_counter() - started) * 1000)
            actions = self._gate.auth_done(outcome, session_id, time.monotonic())
            if self._on_auth_decided is not None:
                self._on_auth_decided()  # e.g. store the port's backoff, before the reply
            last = actions[-1] if actions else None
            pending = last if isinstance(last, Authenticate) else None
            if pending is not None:
                actions.pop()
            self._execute(actions)
            if outcome.authenticated and session_id is None:
                self._check_storage(reschedule=False)
            if self._gate.state is not GateState.AUTHENTICATING:
                pending = None  # the gate was locked meanwhile (storage): no more decisions

    # -- the open session: the hot path -------------------------------------------

    def _open_session(self, opened: SessionOpened) -> None:
        if self.tech is None or self.dev is None:
            raise RuntimeError("session opened without both ports")
        log.info("session opened technician=%s session=%s", opened.technician_id, opened.session_id)
        discarded = self._gate.discarded_device_bytes - self._reported_discards
        if discarded:
            self._reported_discards = self._gate.discarded_device_bytes
            log.info("discarded %d bytes of device output while the gate was closed", discarded)
        now = time.monotonic()
        self._session_started = self._last_activity = now
        self._tech_pump = self._pump(self.tech, self._dev_out, self._technician_gone, IN)
        device_to_tech = self._pump(self.dev, self._tech_out, self._device_gone, OUT)
        if self._gate.awaiting_lf:
            self._add_reader(self.tech.fd, self._guarded(self._first_tech_read))
        else:
            self._add_pump(self.tech.fd, self._tech_pump)
        self._add_pump(self.dev.fd, device_to_tech)
        self._session_timers.append(
            self._loop.call_later(self._idle_timeout, self._guarded(self._idle))
        )
        self._session_timers.append(
            self._loop.call_later(self._max_duration, self._guarded(self._too_long))
        )

    def _first_tech_read(self) -> None:
        """The first read of a session whose login line ended with a bare CR:
        through the gate, which drops the LF that belongs to that line."""
        if self.tech is None:
            return
        try:
            data = self._read(self.tech.fd)
        except HangupError as why:
            self._technician_gone(str(why))
            return
        if data is None:
            return
        self._last_activity = time.monotonic()
        if self._tech_pump is not None:
            self._add_pump(self.tech.fd, self._tech_pump)
        self._execute(self._gate.receive(data, self._last_activity))

    def _pump(
        self, source: Endpoint, outlet: Outlet | None, gone: Callable[[str], None], code: int
    ) -> Pump:
        """The reader of `source` for this session (see `pumps`)."""
        if outlet is None:
            raise RuntimeError("session opened without both ports")
        return Pump(
            source.fd,
            outlet,
            code,
            self._sessions.tap,
            gone=gone,
            touch=self._touch,
            pause=lambda pump: self._pause(source, pump),
            fail_safe=self._fail_safe,
        )

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _pause(self, source: Endpoint, pump: Pump) -> None:
        """Stop reading `source` until `pump`'s outlet has written its backlog."""
        fd = source.fd
        self._remove_reader(fd)

        def resume() -> None:
            if source.fd == fd and self._gate.state is GateState.OPEN:
                self._add_pump(fd, pump)

        pump.outlet.when_drained(resume)

    def _idle(self) -> None:
        if self._gate.state is not GateState.OPEN:
            return
        remaining = self._last_activity + self._idle_timeout - time.monotonic()
        if remaining > 0:
            self._session_timers.append(self._loop.call_later(remaining, self._guarded(self._idle)))
            return
        self._end_and_greet(reasons.IDLE_TIMEOUT)

    def _too_long(self) -> None:
        if self._gate.state is GateState.OPEN:
            self._end_and_greet(reasons.MAX_DURATION)

    def _end_and_greet(self, reason: str) -> None:
        self._execute(self._gate.end_session(reason))
        self._send_technician(f"\r\nSession closed ({reason}).\r\n".encode())
        self._execute(self._gate.banner())

    # -- called from outside the data path (on the loop thread) ----------------------

    def emergency(self, reason: str, notice: str) -> None:
        """Tamper: stop every byte at once, close the session (its recording
        gets its footer), tell the technician, and lock the gate."""
        for outlet in (self._dev_out, self._tech_out):
            if outlet is not None:
                outlet.stop()
        if self._gate.state is GateState.OPEN:
            for endpoint in (self.tech, self.dev):
                if endpoint is not None and endpoint.fd >= 0:
                    self._remove_reader(endpoint.fd)
        self._execute(self._gate.end_session(reason))
        log.critical("EMERGENCY STOP: %s", reason)
        self._send_technician(f"\r\nEMERGENCY STOP: {reason}\r\n".encode())
        self._execute(self._gate.lock(TAMPER_LOCK, notice))
        self._execute(self._gate.banner())

    def release_tamper_lock(self) -> None:
        self._execute(self._gate.unlock(TAMPER_LOCK))

    def lock_tamper(self, notice: str) -> None:
        """Start latched (the latch survived a restart)."""
        self._execute(self._gate.lock(TAMPER_LOCK, notice))

    def recording_problem(self, reason: str) -> None:
        """The recorder cannot go on (`size_limit`, `recording_failed`)."""
        if self._gate.state is GateState.OPEN:
            log.error("ending the session: %s", reason)
            self._end_and_greet(reason)
        self._check_storage(reschedule=False)

    def _check_storage(self, reschedule: bool = True) -> None:
        """Lock the gate while no session can be recorded; unlock when room
        is back. Never while a session is open (it goes on being recorded)."""
        if reschedule:
            self._retries["_check_storage"] = self._loop.call_later(
                STORAGE_CHECK, self._guarded(self._check_storage)
            )
        if self._gate.state is GateState.OPEN or self.stopped.is_set():
            return
        problem = self._sessions.problem()
        locked = STORAGE_LOCK in self._gate.locks
        if problem and not locked:
            log.error("Storage exhausted: %s; refusing new sessions", problem)
            self._execute(self._gate.lock(STORAGE_LOCK, STORAGE_NOTICE))
            self._execute(self._gate.banner())
        elif not problem and locked:
            log.warning("storage available again; accepting sessions")
            self._execute(self._gate.unlock(STORAGE_LOCK))

    def _close_session(self, closed: SessionClosed) -> None:
        for timer in self._session_timers:
            timer.cancel()
        self._session_timers.clear()
        self._tech_pump = None
        for endpoint, reader in (
            (self.tech, self._tech_readable_gate),
            (self.dev, self._dev_readable_gate),
        ):
            if endpoint is not None and endpoint.fd >= 0:
                self._add_reader(endpoint.fd, self._guarded(reader))
        for outlet in (self._tech_out, self._dev_out):
            if outlet is not None:
                outlet.when_drained(lambda: None)
        duration = time.monotonic() - self._session_started
        log.info(
            "session closed session=%s reason=%s duration=%.1fs",
            closed.session_id,
            closed.reason,
            duration,
        )
        self._sessions.end(closed.session_id, closed.reason)
