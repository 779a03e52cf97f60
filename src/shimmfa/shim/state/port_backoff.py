"""The technician port's login backoff, kept across restarts.

The gate machine (`core.gate`) counts the consecutive failed logins at the
port and holds the backoff they earned; `PortBackoff` keeps a copy of both
in the state DB.

Rules:
- A restart (a crash and systemd's restart, a power cycle) does not hand the
  next guess a fresh port: the daemon restores the count and what is left of
  the backoff before the gate shows its banner.
- Saved after every decision that changed the count, before the technician
  sees the reply, as the auth decision itself is. A login after no failures
  changes nothing and costs no commit.
- The end of the backoff is stored as wall-clock time (the monotonic clock
  restarts with the machine). Restored, what is left is clamped to
  [0, gate.backoff_max], so a clock that jumped cannot hold the port longer
  than one full backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from shimmfa.core.gate import GateMachine

log = logging.getLogger("shimmfa.gate")

PORT = "technician"


class BackoffStore(Protocol):
    def port_backoff(self, port: str) -> tuple[int, float]: ...

    def set_port_backoff(self, port: str, failures: int, until: float) -> None: ...


class PortBackoff:
    def __init__(
        self,
        store: BackoffStore,
        gate: GateMachine,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._gate = gate
        self._wall = wall
        self._monotonic = monotonic
        self._saved = 0

    def restore(self) -> None:
        """Give the gate the count and backoff the last run left."""
        failures, until = self._store.port_backoff(PORT)
        self._gate.restore_backoff(failures, until - self._wall(), self._monotonic())
        self._saved = failures
        if failures:
            log.warning(
                "technician port: %d failed login(s) in a row before the restart; "
                "%.0f s of backoff left",
                failures,
                self._gate.backoff_remaining(self._monotonic()),
            )

    def save(self) -> None:
        """Store the gate's count and backoff if a decision changed them."""
        failures = self._gate.failures
        if failures == self._saved:
            return
        until = self._wall() + self._gate.backoff_remaining(self._monotonic())
        self._store.set_port_backoff(PORT, failures, until)
        self._saved = failures
