"""The durable state of MFA chains (`shimmfa.core.chain_state`): its JSON form,
which the shim's SQLite and the central database store, and the in-memory
store."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shimmfa.core.chain_state import FORMAT_VERSION, ChainState, MemoryChainStore

STATE = ChainState(
    floors=(("token_1", 60_000_000), ("token_2", 59_999_999)),
    failures=2,
    failures_since=1_800_000_010.0,
    locked_until=0.0,
    order=("token_2", "token_1"),
    step=1,
    started_at=1_800_000_005.5,
)
# The serialised form, pinned: changing it needs a new FORMAT_VERSION.
STATE_DICT = {
    "version": 1,
    "floors": {"token_1": 60_000_000, "token_2": 59_999_999},
    "failures": 2,
    "failures_since": 1_800_000_010.0,
    "locked_until": 0.0,
    "attempt": {"order": ["token_2", "token_1"], "step": 1, "started_at": 1_800_000_005.5},
}


def test_the_serialised_form_is_pinned() -> None:
    assert FORMAT_VERSION == 1
    assert STATE.to_dict() == STATE_DICT
    assert ChainState.from_dict(json.loads(json.dumps(STATE_DICT))) == STATE


def test_a_fresh_state_has_no_attempt_and_no_floors() -> None:
    fresh = ChainState()
    assert fresh.to_dict() == {
        "version": 1,
        "floors": {},
        "failures": 0,
        "failures_since": 0.0,
        "locked_until": 0.0,
        "attempt": None,
    }
    assert not fresh.started and not fresh.complete
    assert fresh.floor("token_1") == -1


def test_floors_stay_sorted_and_complete_means_every_step_done() -> None:
    state = ChainState().with_floor("b", 5).with_floor("a", 7).with_floor("b", 9)
    assert state.floors == (("a", 7), ("b", 9))
    assert replace(STATE, step=2).complete
    assert not STATE.complete


ids = st.text(min_size=1, max_size=12)
times = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@st.composite
def states(draw: st.DrawFn) -> ChainState:
    floors = draw(st.dictionaries(ids, st.integers(-1, 2**40), max_size=4))
    order = tuple(draw(st.lists(ids, max_size=4, unique=True)))
    return ChainState(
        floors=tuple(sorted(floors.items())),
        failures=draw(st.integers(0, 100)),
        failures_since=draw(times),
        locked_until=draw(times),
        order=order,
        step=draw(st.integers(0, len(order))),
        started_at=draw(times) if order else 0.0,
    )


@given(state=states())
def test_any_state_survives_a_json_round_trip_unchanged(state: ChainState) -> None:
    assert ChainState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def _broken(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(STATE_DICT))
    for key, value in changes.items():
        if key.startswith("attempt_"):
            data["attempt"][key.removeprefix("attempt_")] = value
        elif value is ...:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "state",
        _broken(version=2),
        _broken(version=True),
        _broken(failures=...),
        _broken(extra=1),
        _broken(floors=[["token_1", 1]]),
        _broken(floors={"token_1": "1"}),
        _broken(floors={"token_1": True}),
        _broken(floors={"": 1}),
        _broken(failures=-1),
        _broken(failures=1.5),
        _broken(locked_until="soon"),
        _broken(locked_until=float("inf")),
        _broken(attempt=[]),
        _broken(attempt={"order": ["a"], "step": 0}),
        _broken(attempt_order=[]),
        _broken(attempt_order=["a", "a"]),
        _broken(attempt_order="ab"),
        _broken(attempt_step=3),
        _broken(attempt_step=-1),
        _broken(attempt_started_at=None),
    ],
    ids=repr,
)
def test_malformed_state_is_refused_with_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        ChainState.from_dict(data)


def test_an_inconsistent_state_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="sorted"):
        ChainState(floors=(("b", 1), ("a", 1)))
    with pytest.raises(ValueError, match="without an attempt"):
        ChainState(step=1)


def test_memory_store_reads_unknown_keys_as_fresh_and_commits_updates() -> None:
    store = MemoryChainStore()
    assert store.get("alice") == ChainState()
    answer = store.update("alice", lambda state: (replace(state, failures=3), "done"))
    assert answer == "done"
    assert store.get("alice").failures == 3
    assert store.get("bob") == ChainState()


def test_memory_store_keeps_nothing_from_a_change_that_raises() -> None:
    store = MemoryChainStore()
    store.update("alice", lambda state: (replace(state, failures=1), None))

    def change(state: ChainState) -> tuple[ChainState, None]:
        raise RuntimeError("the caller's bug")

    with pytest.raises(RuntimeError):
        store.update("alice", change)
    assert store.get("alice").failures == 1


def test_memory_store_updates_are_atomic_across_threads() -> None:
    store = MemoryChainStore()
    barrier = threading.Barrier(8)

    def bump() -> None:
        barrier.wait()
        for _ in range(50):
            store.update("alice", lambda state: (replace(state, failures=state.failures + 1), None))

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("alice").failures == 400
