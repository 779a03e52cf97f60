"""`core.chain_state.ChainStateStore` on the central database: one row per
subject holding its `ChainState` as JSON text.

Rules:
- Each `update` is one transaction holding the subject's row lock (made
  first if missing), so two workers verifying the same chain serialise and
  a replay or a lockout cannot slip between them.
- A stored state that does not parse is refused (RuntimeError, a 500): the
  chain fails closed, it never starts again from a blank state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shimmfa.central.context import Central
from shimmfa.central.models import ChainStateRow
from shimmfa.core.chain_state import ChainState

__all__ = ["ALGORITHM", "DIGITS", "PERIOD", "DbChainStore", "subject_of"]

T = TypeVar("T")
DIGITS, PERIOD, ALGORITHM = 6, 30, "SHA1"  # operators' factors: what every app does
_BLANK = json.dumps(ChainState().to_dict(), sort_keys=True)


def _parse(subject: str, text: str) -> ChainState:
    try:
        return ChainState.from_dict(json.loads(text))
    except ValueError as exc:
        raise RuntimeError(f"the chain state of {subject!r} is unreadable ({exc})") from None


def subject_of(operator_id: str) -> str:
    """The chain subject of an operator: a login and a step-up share it."""
    return f"operator:{operator_id}"


class DbChainStore:
    def __init__(self, central: Central) -> None:
        self._central = central

    def update(self, key: str, change: Callable[[ChainState], tuple[ChainState, T]]) -> T:
        insert = pg_insert if self._central.dialect == "postgresql" else sqlite_insert
        with self._central.sessions.begin() as session:
            session.execute(
                insert(ChainStateRow)
                .values(subject=key, state=_BLANK)
                .on_conflict_do_nothing(index_elements=["subject"])
            )
            row = session.get(ChainStateRow, key, with_for_update=True)
            if row is None:  # pragma: no cover - inserted just above
                raise RuntimeError("chain state row vanished")
            new, result = change(_parse(key, row.state))
            row.state = json.dumps(new.to_dict(), sort_keys=True)
        return result

    def get(self, key: str) -> ChainState:
        with self._central.sessions() as session:
            row = session.get(ChainStateRow, key)
            return ChainState() if row is None else _parse(key, row.state)
