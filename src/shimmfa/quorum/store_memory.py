"""Sessions and dealt groups in memory, for `shimmfa quorum serve
--ephemeral` and tests: one process, gone at exit.

Rules: one lock serialises every change to every session (a change is a
few dictionary operations; `decide` does no I/O), so two concurrent
submissions of one Toc cannot both count and a code cannot be released
twice. Registering a group twice is allowed only with the same record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from shimmfa.core.toc import TocGroup
from shimmfa.errors import QuorumError
from shimmfa.quorum.records import Change, SessionState, applied, deal_record

__all__ = ["MemoryGroupRegistry", "MemorySessionStore"]

T = TypeVar("T")


class MemorySessionStore:
    """A `SessionStore` in a dictionary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionState] = {}

    def create(self, state: SessionState) -> None:
        with self._lock:
            if state.session.id in self._sessions:
                raise QuorumError("a session with this id exists already; open another")
            self._sessions[state.session.id] = state

    def read(self, session_id: str) -> SessionState | None:
        with self._lock:
            return self._sessions.get(session_id)

    def update(
        self, session_id: str, decide: Callable[[SessionState], tuple[Change, T]]
    ) -> T | None:
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                return None
            change, result = decide(state)
            self._sessions[session_id] = applied(state, change)
            return result

    def sweep(self, now: float, keep_until: float) -> int:
        with self._lock:
            deleted = 0
            for session_id, state in list(self._sessions.items()):
                if state.session.expires_at > now:
                    continue
                if state.session.expires_at < keep_until:
                    del self._sessions[session_id]
                    deleted += 1
                elif state.session.sealed_identity is not None:
                    self._sessions[session_id] = applied(state, Change(forget=True))
            return deleted


class MemoryGroupRegistry:
    """A `GroupRegistry` in a dictionary; `register` records one deal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deals: dict[str, tuple[TocGroup, ...]] = {}

    def register(self, groups: Sequence[TocGroup]) -> None:
        record = deal_record(groups)
        with self._lock:
            for group in record:
                known = self._deals.get(group.group_id)
                if known is not None and set(known) != set(record):
                    raise QuorumError(
                        f"group {group.group_id} is registered already, as part of another deal"
                    )
            for group in record:
                self._deals[group.group_id] = record

    def retire(self, group_id: str) -> int:
        """Forget the deal `group_id` belongs to (as `SqlGroupRegistry.retire`)."""
        with self._lock:
            record = self._deals.get(group_id, ())
            for group in record:
                del self._deals[group.group_id]
            return len(record)

    def deal_of(self, group_id: str) -> tuple[TocGroup, ...] | None:
        with self._lock:
            return self._deals.get(group_id)
