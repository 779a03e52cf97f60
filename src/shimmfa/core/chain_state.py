"""The durable state of MFA chains (`core.chain`) and the one seam to where it
is kept.

Rules of this module:

- One `ChainState` per subject (a technician, an operator): the replay floor
  of each of its factors (the last accepted time step), its failure count and
  lockout, and the attempt in progress (which factors, in which order, how many
  are done, when it started).
- A `ChainState` is always consistent: the attempt's factors are distinct, its
  step lies within them, counts are not negative, times are finite. Building
  one that is not raises ValueError.
- `ChainStateStore` is the one seam: `update(key, change)` applies `change` to
  the stored state of `key` atomically, stores what it returns and commits
  before returning; `get(key)` reads. A key never written reads as
  `ChainState()`. `change` is a pure function of the state it is given.
- The state is plain data: `to_dict()` gives a JSON-able dict (format version
  `FORMAT_VERSION`), `from_dict()` takes it back and refuses anything else with
  ValueError, so a store can keep it in any text column.
- `MemoryChainStore` keeps each state as JSON text: every update goes through
  the serialised form, so what works in memory works in a database.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

__all__ = ["FORMAT_VERSION", "ChainState", "ChainStateStore", "MemoryChainStore"]

FORMAT_VERSION = 1
_KEYS = frozenset({"version", "floors", "failures", "failures_since", "locked_until", "attempt"})
_ATTEMPT_KEYS = frozenset({"order", "step", "started_at"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChainState:
    """Everything a chain remembers about one subject. `floors` holds
    (factor id, last accepted time step) pairs sorted by id; `order` is empty
    when no attempt has started."""

    floors: tuple[tuple[str, int], ...] = ()
    failures: int = 0
    failures_since: float = 0.0
    locked_until: float = 0.0
    order: tuple[str, ...] = ()
    step: int = 0
    started_at: float = 0.0

    def __post_init__(self) -> None:
        ids = [factor_id for factor_id, _ in self.floors]
        if ids != sorted(set(ids)):
            raise ValueError("replay floors must name each factor once, sorted by id")
        if len(set(self.order)) != len(self.order):
            raise ValueError("an attempt cannot name a factor twice")
        if not self.order and (self.step, self.started_at) != (0, 0.0):
            raise ValueError("a state without an attempt has step 0 and started_at 0")
        if not 0 <= self.step <= len(self.order):
            raise ValueError(f"step {self.step} is outside the attempt's {len(self.order)} factors")
        if self.failures < 0:
            raise ValueError("failures must not be negative")
        if not all(map(math.isfinite, (self.failures_since, self.locked_until, self.started_at))):
            raise ValueError("times must be finite numbers")

    @property
    def started(self) -> bool:
        return bool(self.order)

    @property
    def complete(self) -> bool:
        return self.started and self.step == len(self.order)

    def floor(self, factor_id: str) -> int:
        """The last accepted time step of `factor_id`, -1 if none."""
        return dict(self.floors).get(factor_id, -1)

    def with_floor(self, factor_id: str, counter: int) -> ChainState:
        floors = dict(self.floors)
        floors[factor_id] = counter
        return replace(self, floors=tuple(sorted(floors.items())))

    def to_dict(self) -> dict[str, object]:
        attempt = (
            {"order": list(self.order), "step": self.step, "started_at": self.started_at}
            if self.started
            else None
        )
        return {
            "version": FORMAT_VERSION,
            "floors": dict(self.floors),
            "failures": self.failures,
            "failures_since": self.failures_since,
            "locked_until": self.locked_until,
            "attempt": attempt,
        }

    @classmethod
    def from_dict(cls, data: object) -> ChainState:
        """The state `to_dict()` produced (also after a JSON round trip)."""
        fields = _mapping(data, _KEYS, "chain state")
        if fields["version"] != FORMAT_VERSION or isinstance(fields["version"], bool):
            raise ValueError(f"chain state version must be {FORMAT_VERSION}")
        raw_floors = fields["floors"]
        if not isinstance(raw_floors, Mapping):
            raise ValueError("chain state floors must be an object")
        floors = tuple(
            sorted((_text(k, "floor factor id"), _int(v, "floor")) for k, v in raw_floors.items())
        )
        order: tuple[str, ...] = ()
        step, started_at = 0, 0.0
        if fields["attempt"] is not None:
            attempt = _mapping(fields["attempt"], _ATTEMPT_KEYS, "chain attempt")
            raw_order = attempt["order"]
            if not isinstance(raw_order, list) or not raw_order:
                raise ValueError("chain attempt order must be a non-empty list")
            order = tuple(_text(item, "attempt factor id") for item in raw_order)
            step = _int(attempt["step"], "attempt step")
            started_at = _number(attempt["started_at"], "attempt started_at")
        return cls(
            floors=floors,
            failures=_int(fields["failures"], "failures"),
            failures_since=_number(fields["failures_since"], "failures_since"),
            locked_until=_number(fields["locked_until"], "locked_until"),
            order=order,
            step=step,
            started_at=started_at,
        )


def _mapping(data: object, keys: frozenset[str], what: str) -> Mapping[str, object]:
    if not isinstance(data, Mapping) or set(data) != keys:
        raise ValueError(f"{what} must be an object with exactly: {', '.join(sorted(keys))}")
    return data


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be non-empty text")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer")
    return value


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{what} must be a number")
    return float(value)


class ChainStateStore(Protocol):
    """The one seam to durable chain state: apply `change` to the stored state
    of `key` atomically, store what it returns and commit before returning."""

    def update(self, key: str, change: Callable[[ChainState], tuple[ChainState, T]]) -> T: ...

    def get(self, key: str) -> ChainState: ...


class MemoryChainStore:
    """In-memory `ChainStateStore` (tests, a single process). Each state is
    kept as the JSON text of `ChainState.to_dict()`."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._lock = threading.Lock()

    def update(self, key: str, change: Callable[[ChainState], tuple[ChainState, T]]) -> T:
        with self._lock:
            new, result = change(self._load(key))
            self._texts[key] = json.dumps(new.to_dict(), sort_keys=True)
            return result

    def get(self, key: str) -> ChainState:
        with self._lock:
            return self._load(key)

    def _load(self, key: str) -> ChainState:
        text = self._texts.get(key)
        return ChainState() if text is None else ChainState.from_dict(json.loads(text))
