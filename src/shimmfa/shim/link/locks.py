"""Why the gate refuses logins while no session could be recorded: the
recorder is down, or its disk has no room. Checked on the loop.

Rules:
- The check runs at start, every `RECORDING_CHECK` seconds (every
  `RECORDER_RETRY` while the recorder is down, so a replaced recorder opens
  the gate soon), before every login decision and after a recording
  problem. Never while a session is open: it goes on being recorded.
- The technician is told which it is: `Recording unavailable` when the
  recorder itself is down (being replaced), `Storage exhausted` when the
  disk is: an engineer must not go looking for a full disk that is not.
- A lock whose reason changes shows the new notice at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shimmfa.core.gate import Action, GateMachine, GateState
from shimmfa.shim.link.seams import NoRecording, Sessions

__all__ = [
    "RECORDING_LOCK",
    "RECORDER_NOTICE",
    "STORAGE_NOTICE",
    "RecordingLock",
]

log = logging.getLogger("shimmfa.relay")

RECORDING_LOCK = "storage"
STORAGE_NOTICE = "Storage exhausted; no new sessions can be recorded."
RECORDER_NOTICE = "Recording unavailable; no new sessions until it is back. Try again shortly."
RECORDING_CHECK = 10.0
RECORDER_RETRY = 2.0


def _notice(problem: NoRecording) -> str:
    return RECORDER_NOTICE if problem.recorder else STORAGE_NOTICE


class RecordingLock:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        gate: GateMachine,
        sessions: Sessions,
        *,
        execute: Callable[[list[Action]], None],
        guarded: Callable[[Callable[[], None]], Callable[[], None]],
        stopped: asyncio.Event,
    ) -> None:
        self._loop = loop
        self._gate = gate
        self._sessions = sessions
        self._execute = execute
        self._guarded = guarded
        self._stopped = stopped
        self._shown: str | None = None  # the notice the lock holds
        self._timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> bool:
        return RECORDING_LOCK in self._gate.locks

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def check(self, reschedule: bool = True) -> None:
        """Lock the gate while no session can be recorded; unlock when it
        can again."""
        if self._gate.state is GateState.OPEN or self._stopped.is_set():
            if reschedule:
                self._schedule(RECORDING_CHECK)
            return
        problem = self._sessions.problem()
        if reschedule:
            down = problem is not None and problem.recorder
            self._schedule(RECORDER_RETRY if down else RECORDING_CHECK)
        if problem is not None:
            notice = _notice(problem)
            if notice != self._shown or not self.held:
                log.error("%s (%s); refusing new sessions", notice, problem.reason)
                self._shown = notice
                self._execute(self._gate.lock(RECORDING_LOCK, notice))
                self._execute(self._gate.banner())
        elif self.held:
            log.warning("recording available again; accepting sessions")
            self._shown = None
            self._execute(self._gate.unlock(RECORDING_LOCK))

    def _schedule(self, delay: float) -> None:
        self.cancel()
        self._timer = self._loop.call_later(delay, self._guarded(self.check))
