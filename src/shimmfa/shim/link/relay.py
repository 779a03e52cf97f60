"""The relay: executes the gate's actions between the two serial ports, on
one asyncio loop. The ports (opening, reopening, hang-ups) are `ports`; an
open session's pumps and timers are `session`.

Rules:
- The relay executes the gate's actions and decides nothing itself. While the
  gate is not OPEN, technician bytes go to the gate and device bytes are read
  and dropped (counted); nothing is written to the device.
- While OPEN, each side's pump writes straight to the other side: one read,
  one write, no waiting for the other direction (`session`, `pumps`).
- Logins are decided one after the other, in a loop, never by recursion;
  each decision is stored before the technician sees its reply.
- A session ends on hang-up, idle timeout, max duration, a recording
  problem, tamper or shutdown; then the gate shows its banner to the next
  technician (after reopening the port if it hung up).
- While no session can be recorded (the recorder down, or no room), the
  gate is locked and says which (`locks`).
- Fail safe: any unexpected exception in a callback stops all traffic, closes
  the device side, tells the technician `EMERGENCY STOP: internal_error`, and
  stops the loop with a non-zero exit code. Never pass-through.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from shimmfa.core import session as reasons
from shimmfa.core.events import shown_id
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
from shimmfa.errors import ShimMfaError
from shimmfa.shim.link.locks import RecordingLock
from shimmfa.shim.link.outlet import HangupError
from shimmfa.shim.link.passthrough import PassThroughSelector, Readers
from shimmfa.shim.link.ports import Ports, read_once
from shimmfa.shim.link.seams import Authenticator, Sessions
from shimmfa.shim.link.serialport import Endpoint
from shimmfa.shim.link.session import OpenSession

log = logging.getLogger("shimmfa.relay")

TECH_BACKLOG_LIMIT = 1 << 20  # gate output nobody reads is dropped past this
EXIT_FAIL_SAFE = 70
DEVICE_LOCK = "device"
DEVICE_NOTICE = "Device not connected; try again later."
TAMPER_LOCK = "tamper"


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
        self._readers = Readers(loop, pass_through)
        self._gate = gate
        self._auth = authenticator
        self._sessions = sessions
        self._idle_timeout = idle_timeout
        self._max_duration = max_duration
        self._on_auth_decided = on_auth_decided
        self._record = sessions.record
        self._session: OpenSession | None = None
        self.ports = Ports(
            loop,
            self._readers,
            open_technician,
            open_device,
            self,
            guarded=self._guarded,
            on_ready=on_ready,
            on_device_carrier=on_device_carrier,
        )
        self.stopped = asyncio.Event()
        self._recording = RecordingLock(
            loop,
            gate,
            sessions,
            execute=self._execute,
            guarded=self._guarded,
            stopped=self.stopped,
        )
        self._reported_discards = 0
        self.exit_code = 0

    # -- lifecycle ------------------------------------------------------------

    @property
    def tech(self) -> Endpoint | None:
        return self.ports.tech

    @property
    def dev(self) -> Endpoint | None:
        return self.ports.dev

    def start(self) -> None:
        self._loop.set_exception_handler(self._loop_exception)
        self._gate.lock(DEVICE_LOCK, DEVICE_NOTICE)
        self.ports.start()
        self._guarded(self._recording.check)()

    def shutdown(self) -> None:
        """SIGTERM/SIGINT: close the session, tell the technician, stop."""
        log.info("shutdown requested")
        self._execute(self._gate.end_session(reasons.SHUTDOWN))
        if self.tech is not None:
            self._best_effort_write(self.tech.fd, b"\r\nShim shutting down.\r\n")
        self._stop(0)

    def _stop(self, code: int) -> None:
        self.exit_code = code
        if self._session is not None:
            self._session.close()
        self._recording.cancel()
        self.ports.close()
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
        self.ports.cut_device()
        try:
            actions = self._gate.emergency_stop(reasons.INTERNAL_ERROR)
            for action in actions:
                if isinstance(action, SessionClosed):
                    self._close_session(action)
                elif isinstance(action, SendToTechnician) and self.tech is not None:
                    self._best_effort_write(self.tech.fd, action.data)
        finally:
            self._stop(EXIT_FAIL_SAFE)

    @staticmethod
    def _best_effort_write(fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except OSError:
            pass

    # -- the ports coming and going (ports.PortListener) ----------------------

    def technician_opened(self) -> None:
        if self.tech is None:
            return
        self._readers.add(self.tech.fd, self._guarded(self._tech_readable_gate))
        self._execute(self._gate.banner())

    def device_opened(self) -> None:
        if self.dev is None:
            return
        self._readers.add(self.dev.fd, self._guarded(self._dev_readable_gate))
        self._execute(self._gate.unlock(DEVICE_LOCK))

    def technician_lost(self) -> None:
        self._execute(self._gate.end_session(reasons.TECHNICIAN_HANGUP))

    def device_lost(self) -> None:
        self._execute(self._gate.end_session(reasons.DEVICE_HANGUP))
        self._execute(self._gate.lock(DEVICE_LOCK, DEVICE_NOTICE))
        if self.tech is not None and self.ports.tech_out is not None:
            self._execute(self._gate.banner())

    # -- reading while the gate is closed -----------------------------------

    def _tech_readable_gate(self) -> None:
        if self.tech is None:
            return
        try:
            data = read_once(self.tech.fd)
        except HangupError as why:
            self.ports.technician_gone(str(why))
            return
        if data:
            self._execute(self._gate.receive(data, time.monotonic()))

    def _dev_readable_gate(self) -> None:
        if self.dev is None:
            return
        try:
            data = read_once(self.dev.fd)
        except HangupError as why:
            self.ports.device_gone(str(why))
            return
        if data:
            self._gate.device_output(data)

    # -- executing gate actions -------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendToTechnician):
                self._send_technician(action.data)
            elif isinstance(action, ForwardToDevice):
                if self._gate.state is not GateState.OPEN or self.ports.dev_out is None:
                    raise RuntimeError("ForwardToDevice outside an open session")
                self._record("in", action.data)
                if not self.ports.dev_out.write(action.data) and self.tech is not None:
                    if self._session is None:
                        raise RuntimeError("ForwardToDevice before the session's readers")
                    self._session.pause_technician()
            elif isinstance(action, Authenticate):
                self._authenticate(action)
            elif isinstance(action, SessionOpened):
                self._open_session(action)
            elif isinstance(action, SessionClosed):
                self._close_session(action)
            elif isinstance(action, AuthFailed):
                log.warning(
                    "auth failure technician=%r result=%s detail=%s backoff=%.0fs",
                    shown_id(action.technician_id[:64]),
                    action.result.value,
                    action.detail,
                    action.backoff_seconds,
                )
            elif isinstance(action, FormatRejected):
                log.info("login line rejected: %s", action.reason)
            elif isinstance(action, Discarded):
                log.debug("discarded %d technician bytes (%s)", action.nbytes, action.reason)

    def _send_technician(self, data: bytes) -> None:
        out = self.ports.tech_out
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
        self._recording.check(reschedule=False)
        if self._recording.held:
            return  # the gate now says why no session can be recorded; the code is not spent
        pending: Authenticate | None = request
        while pending is not None:
            started = time.perf_counter()
            tid = pending.technician_id
            if pending.step == 0:
                outcome = self._auth.authenticate(tid, pending.code)
            else:
                outcome = self._auth.verify_factor(tid, pending.code)
            next_factor = self._auth.next_factor(tid) if outcome.authenticated else None
            session_id: str | None = None
            if outcome.authenticated and next_factor is None:
                try:
                    session_id = self._sessions.start(outcome.technician_id)
                except ShimMfaError as exc:
                    log.error("session for %s refused: %s", outcome.technician_id, exc)
            log.debug("auth decision in %.2f ms", (time.perf_counter() - started) * 1000)
            actions = self._gate.auth_done(outcome, session_id, time.monotonic(), next_factor)
            if self._on_auth_decided is not None:
                self._on_auth_decided()  # e.g. store the port's backoff, before the reply
            last = actions[-1] if actions else None
            pending = last if isinstance(last, Authenticate) else None
            if pending is not None:
                actions.pop()
            self._execute(actions)
            if outcome.authenticated and next_factor is None and session_id is None:
                self._recording.check(reschedule=False)
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
        self._session = OpenSession(
            self._loop,
            self._readers,
            self.ports,
            self._gate,
            self._sessions.tap,
            guarded=self._guarded,
            fail_safe=self._fail_safe,
            execute=self._execute,
            expire=self._end_and_greet,
            idle_timeout=self._idle_timeout,
            max_duration=self._max_duration,
        )

    def _end_and_greet(self, reason: str) -> None:
        self._execute(self._gate.end_session(reason))
        self._send_technician(f"\r\nSession closed ({reason}).\r\n".encode())
        self._execute(self._gate.banner())

    # -- called from outside the data path (on the loop thread) ----------------------

    def emergency(self, reason: str, notice: str) -> None:
        """Tamper: stop every byte at once, close the session (its recording
        gets its footer), tell the technician, and lock the gate."""
        self.ports.stop_writers()
        if self._gate.state is GateState.OPEN:
            for endpoint in (self.tech, self.dev):
                if endpoint is not None and endpoint.fd >= 0:
                    self._readers.remove(endpoint.fd)
        self._execute(self._gate.end_session(reason))
        log.critical("EMERGENCY STOP: %s", reason)
        self._send_technician(f"\r\nEMERGENCY STOP: {reason}\r\n".encode())
        self._execute(self._gate.lock(TAMPER_LOCK, notice))
        self._execute(self._gate.banner())

    def release_tamper_lock(self) -> None:
        self._execute(self._gate.unlock(TAMPER_LOCK))

    def lock_tamper(self, notice: str) -> None:
        """Latched without an emergency: at start (the latch survived a
        restart), or with a new reason. The technician sees the notice."""
        self._execute(self._gate.lock(TAMPER_LOCK, notice))
        self._execute(self._gate.banner())

    def recording_problem(self, reason: str) -> None:
        """The recorder cannot go on (`size_limit`, `recording_failed`)."""
        if self._gate.state is GateState.OPEN:
            log.error("ending the session: %s", reason)
            self._end_and_greet(reason)
        self._recording.check(reschedule=False)

    def _close_session(self, closed: SessionClosed) -> None:
        session, self._session = self._session, None
        duration = session.close() if session is not None else 0.0
        for endpoint, reader in (
            (self.tech, self._tech_readable_gate),
            (self.dev, self._dev_readable_gate),
        ):
            if endpoint is not None and endpoint.fd >= 0:
                self._readers.add(endpoint.fd, self._guarded(reader))
        for outlet in (self.ports.tech_out, self.ports.dev_out):
            if outlet is not None:
                outlet.when_drained(lambda: None)
        log.info(
            "session closed session=%s reason=%s duration=%.1fs",
            closed.session_id,
            closed.reason,
            duration,
        )
        self._sessions.end(closed.session_id, closed.reason)
