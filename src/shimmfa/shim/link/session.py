"""One open session's machinery: its two pumps on the ports, pausing and
resuming them, and its idle and maximum-duration timers.

Rules:
- While the session is open each side's reader is its `Pump` (the hot
  path), straight from the selector when it can. The first technician read
  goes through the gate instead when the login line ended with a bare CR
  (`GateMachine.awaiting_lf`): the LF that belongs to that line is dropped.
- A pump whose outlet is full stops reading its source until the outlet has
  written its backlog (backpressure, never a drop); it resumes only if that
  source is still the one it read and the gate is still OPEN.
- Any traffic either way counts as activity. `idle_timeout` seconds without
  any, or `max_duration` in all, ends the session through `expire(reason)`.
- `close()` stops the timers; the relay then gives the ports back to the gate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from shimmfa.core import session as reasons
from shimmfa.core.gate import Action, GateMachine, GateState
from shimmfa.shim.link.outlet import HangupError, Outlet
from shimmfa.shim.link.passthrough import Readers
from shimmfa.shim.link.ports import Ports, read_once
from shimmfa.shim.link.pumps import Pump
from shimmfa.shim.link.seams import Tap
from shimmfa.shim.link.serialport import Endpoint
from shimmfa.shim.link.wire import IN, OUT

__all__ = ["OpenSession"]


class OpenSession:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        readers: Readers,
        ports: Ports,
        gate: GateMachine,
        tap: Tap,
        *,
        guarded: Callable[[Callable[[], None]], Callable[[], None]],
        fail_safe: Callable[[BaseException], None],
        execute: Callable[[list[Action]], None],
        expire: Callable[[str], None],
        idle_timeout: float,
        max_duration: float,
    ) -> None:
        tech, dev = ports.tech, ports.dev
        if tech is None or dev is None:
            raise RuntimeError("session opened without both ports")
        self._loop = loop
        self._readers = readers
        self._ports = ports
        self._gate = gate
        self._tap = tap
        self._guarded = guarded
        self._fail_safe = fail_safe
        self._execute = execute
        self._expire = expire
        self._idle_timeout = idle_timeout
        self.started = self.last_activity = time.monotonic()
        self._tech = tech
        self._tech_pump = self._pump(tech, ports.dev_out, ports.technician_gone, IN)
        device_pump = self._pump(dev, ports.tech_out, ports.device_gone, OUT)
        if gate.awaiting_lf:
            readers.add(tech.fd, guarded(self._first_tech_read))
        else:
            readers.add_pump(tech.fd, self._tech_pump)
        readers.add_pump(dev.fd, device_pump)
        self._timers = [
            loop.call_later(idle_timeout, guarded(self._idle)),
            loop.call_later(max_duration, guarded(self._too_long)),
        ]

    def close(self) -> float:
        """Stop the session's timers; how long it lasted, in seconds."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        return time.monotonic() - self.started

    def pause_technician(self) -> None:
        """The device's outlet is full: stop reading the technician."""
        self._pause(self._tech, self._tech_pump)

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
            self._tap,
            gone=gone,
            touch=self._touch,
            pause=lambda pump: self._pause(source, pump),
            fail_safe=self._fail_safe,
        )

    def _first_tech_read(self) -> None:
        """The first read of a session whose login line ended with a bare CR:
        through the gate, which drops the LF that belongs to that line."""
        tech = self._ports.tech
        if tech is None:
            return
        try:
            data = read_once(tech.fd)
        except HangupError as why:
            self._ports.technician_gone(str(why))
            return
        if data is None:
            return
        self.last_activity = time.monotonic()
        self._readers.add_pump(tech.fd, self._tech_pump)
        self._execute(self._gate.receive(data, self.last_activity))

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

    def _pause(self, source: Endpoint, pump: Pump) -> None:
        """Stop reading `source` until `pump`'s outlet has written its backlog."""
        fd = source.fd
        self._readers.remove(fd)

        def resume() -> None:
            if source.fd == fd and self._gate.state is GateState.OPEN:
                self._readers.add_pump(fd, pump)

        pump.outlet.when_drained(resume)

    def _idle(self) -> None:
        if self._gate.state is not GateState.OPEN:
            return
        remaining = self.last_activity + self._idle_timeout - time.monotonic()
        if remaining > 0:
            self._timers.append(self._loop.call_later(remaining, self._guarded(self._idle)))
            return
        self._expire(reasons.IDLE_TIMEOUT)

    def _too_long(self) -> None:
        if self._gate.state is GateState.OPEN:
            self._expire(reasons.MAX_DURATION)
