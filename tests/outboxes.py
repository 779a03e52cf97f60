"""What the outbox and sender tests share: events to queue, a sink that
stands in for a receiver, a fake clock, and fixtures that open outboxes and
stop senders. Test modules import the fixtures they use by name."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shimmfa.core.events import Event
from shimmfa.shim.reporting.outbox import Outbox, new_event
from shimmfa.transport.sender import OutboxSender

SHIM = "shim-test"


def heartbeat(seq: int = 0) -> Event:
    return new_event("heartbeat", SHIM, {"seq": seq})


def tamper(n: int = 0) -> Event:
    return new_event("tamper", SHIM, {"event": "case_opened", "n": n})


def kinds(outbox: Outbox) -> list[str]:
    return [entry.event.kind for entry in outbox.oldest(10**6)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def opened(root: Path) -> Iterator[Callable[..., Outbox]]:
    made: list[Outbox] = []

    def make(**kwargs: Any) -> Outbox:
        outbox = Outbox(root, **kwargs)
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.close()


class FakeSink:
    """Stands in for a receiver: keeps what it took; can fail or hang."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.take: int | None = None  # how many of a batch to take (None: all)
        self.error: Exception | None = None
        self.hang = False
        self.called = threading.Event()
        self._released = threading.Event()
        self.closed = False

    def deliver(self, events: Sequence[Event]) -> int:
        self.batches.append(list(events))
        self.called.set()
        if self.hang:
            self._released.wait(30)
            return 0
        if self.error is not None:
            raise self.error
        return len(events) if self.take is None else self.take

    def abort(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.closed = True

    @property
    def taken(self) -> list[str]:
        return [e.event_id for batch in self.batches for e in batch]


@pytest.fixture
def senders() -> Iterator[list[OutboxSender]]:
    made: list[OutboxSender] = []
    yield made
    for sender in made:
        sender.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
