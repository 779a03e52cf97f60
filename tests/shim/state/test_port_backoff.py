"""The technician port's backoff in the state DB: what one run of the daemon
leaves, the next one restores (shim/state/port_backoff.py on a real StateStore)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shimmfa.core.gate import Authenticate, GateConfig, GateMachine
from shimmfa.core.totp import AuthOutcome, AuthResult
from shimmfa.shim.state.db import _SCHEMA
from shimmfa.shim.state.port_backoff import PORT, PortBackoff
from shimmfa.shim.state.store import StateStore

WALL = 1_795_431_299.0
LOGIN = b"alice@example.org 123456\r"
GATE = GateConfig(echo=False, backoff_initial=1, backoff_max=60)


class Clocks:
    def __init__(self, wall: float, monotonic: float) -> None:
        self.wall, self.monotonic = wall, monotonic

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds


class CountingStore:
    """The real store, counting the commits of the port's backoff."""

    def __init__(self, store: StateStore) -> None:
        self.store, self.commits = store, 0

    def port_backoff(self, port: str) -> tuple[int, float]:
        return self.store.port_backoff(port)

    def set_port_backoff(self, port: str, failures: int, until: float) -> None:
        self.commits += 1
        self.store.set_port_backoff(port, failures, until)


def run(store: CountingStore, clocks: Clocks) -> tuple[GateMachine, PortBackoff]:
    """One daemon start: a new gate, restored from the store."""
    gate = GateMachine(GATE)
    backoff = PortBackoff(store, gate, wall=lambda: clocks.wall, monotonic=lambda: clocks.monotonic)
    backoff.restore()
    return gate, backoff


def decide(gate: GateMachine, backoff: PortBackoff, clocks: Clocks, ok: bool) -> None:
    assert gate.receive(LOGIN, clocks.monotonic) == [Authenticate("alice@example.org", "123456")]
    result = AuthResult.OK if ok else AuthResult.BAD_CODE
    outcome = AuthOutcome(result, "alice@example.org", 1 if ok else None, "")
    gate.auth_done(outcome, "session-1" if ok else None, clocks.monotonic)
    backoff.save()
    if ok:
        gate.end_session("technician_hangup")


def held(gate: GateMachine, clocks: Clocks) -> bool:
    return not any(isinstance(a, Authenticate) for a in gate.receive(LOGIN, clocks.monotonic))


def test_failures_and_what_is_left_of_the_backoff_survive_a_restart(tmp_path: Path) -> None:
    store = CountingStore(StateStore(tmp_path))
    clocks = Clocks(WALL, 50.0)
    gate, backoff = run(store, clocks)
    for delay in (1, 2, 4):
        decide(gate, backoff, clocks, ok=False)
        clocks.advance(delay)
    decide(gate, backoff, clocks, ok=False)  # the 4th: 8 s
    store.store.close()

    clocks.advance(3)
    clocks.monotonic = 7.0  # the machine rebooted
    again = CountingStore(StateStore(tmp_path))
    gate, backoff = run(again, clocks)

    assert gate.failures == 4
    assert held(gate, clocks)
    clocks.advance(5)
    decide(gate, backoff, clocks, ok=False)  # the 5th, after the 5 s left
    assert gate.backoff_remaining(clocks.monotonic) == 16
    assert again.store.port_backoff(PORT) == (5, clocks.wall + 16)
    again.store.close()


def test_a_login_clears_it_and_a_login_after_none_costs_no_commit(tmp_path: Path) -> None:
    store = CountingStore(StateStore(tmp_path))
    clocks = Clocks(WALL, 50.0)
    gate, backoff = run(store, clocks)
    decide(gate, backoff, clocks, ok=True)
    assert store.commits == 0
    decide(gate, backoff, clocks, ok=False)
    clocks.advance(1)
    decide(gate, backoff, clocks, ok=True)
    assert store.commits == 2
    assert store.store.port_backoff(PORT) == (0, clocks.wall)
    store.store.close()

    gate, _ = run(CountingStore(StateStore(tmp_path)), clocks)
    assert gate.failures == 0
    assert not held(gate, clocks)


def test_a_wall_clock_that_jumped_back_holds_the_port_one_backoff_at_most(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path)
    store.set_port_backoff(PORT, 9, WALL + 86_400)  # written under a clock a day ahead
    store.close()
    clocks = Clocks(WALL, 0.0)
    gate, _ = run(CountingStore(StateStore(tmp_path)), clocks)
    assert gate.backoff_remaining(clocks.monotonic) == GATE.backoff_max


def test_a_database_from_before_the_table_gains_it_empty(tmp_path: Path) -> None:
    path = tmp_path / "state" / "shim.db"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    for number, script in enumerate(_SCHEMA[:4]):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {number + 1}")
    db.commit()
    db.close()
    store = StateStore(tmp_path)
    assert store.port_backoff(PORT) == (0, 0.0)
    store.set_port_backoff(PORT, 1, WALL)
    assert store.port_backoff(PORT) == (1, WALL)
    store.close()
