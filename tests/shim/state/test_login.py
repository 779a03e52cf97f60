"""A login at the port with an MFA chain (`shimmfa.shim.state.login`), on a
real state DB: the first factor, then the technician's further ones; a
secret of one factor passes no other; a used code never passes again; a
restart keeps the chain's lockout and replay floors; random mode draws its
order from the OS, not from Python's `random`."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from shimmfa.core.gate import BREAKGLASS_ID
from shimmfa.core.totp import AuthResult
from shimmfa.errors import ConfigError
from shimmfa.shim.config import parse_settings
from shimmfa.shim.state.breakglass import provision
from shimmfa.shim.state.login import ShimLogin
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import build_gate, enrol, enrol_factor

ALICE = "alice@example.org"
PRIMARY = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - test secret
BACKUP = "MJXWELLTMVRXEZLUFVXWMLJSGAWWE6LU"  # noqa: S105 - test secret
DESK = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA"  # noqa: S105 - test secret
T0 = 1_800_000_010.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def config(tmp_path: Path, **gate: Any) -> Any:
    return parse_settings(
        {
            "shim": {"id": "shim-1"},
            "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
            "storage": {"root": str(tmp_path / "storage")},
            "gate": {"echo": False, **gate},
            "technicians": [
                {
                    "technician_id": ALICE,
                    "totp_secret": PRIMARY,
                    "factors": [
                        {"label": "Backup token", "totp_secret": BACKUP},
                        {"label": "Desk token", "totp_secret": DESK},
                    ],
                }
            ],
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    made = StateStore(tmp_path / "storage")
    yield made
    made.close()


def code(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(int(clock.now))


def chained(settings: Any, store: StateStore, clock: Clock) -> ShimLogin:
    """The daemon's login (`ShimLogin.for_shim`), on the test's clock."""
    return ShimLogin.for_shim(
        settings, store, build_gate(settings, store, clock=clock), clock=clock
    )


def test_without_a_policy_every_factor_is_asked_in_order(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    shim = chained(config(tmp_path), store, clock)
    assert shim.authenticate(ALICE, code(PRIMARY, clock)).authenticated
    assert shim.next_factor(ALICE) == "Backup token"
    assert shim.verify_factor(ALICE, code(BACKUP, clock)).authenticated
    assert shim.next_factor(ALICE) == "Desk token"
    assert shim.verify_factor(ALICE, code(DESK, clock)).authenticated
    assert shim.next_factor(ALICE) is None  # complete: the session may open


def test_a_policy_of_two_steps_asks_for_one_more(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    shim = chained(config(tmp_path, policy={"required_steps": 2}), store, clock)
    shim.authenticate(ALICE, code(PRIMARY, clock))
    assert shim.next_factor(ALICE) == "Backup token"
    shim.verify_factor(ALICE, code(BACKUP, clock))
    assert shim.next_factor(ALICE) is None


def test_one_factors_secret_passes_no_other(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    shim = chained(config(tmp_path), store, clock)
    shim.authenticate(ALICE, code(PRIMARY, clock))
    wrong = shim.verify_factor(ALICE, code(DESK, clock))  # the desk token's code at "Backup"
    assert wrong.result is AuthResult.BAD_CODE and "Backup token" in wrong.detail
    assert shim.next_factor(ALICE) is None  # the attempt is over: back to the banner


def test_a_used_factor_code_never_passes_again(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    shim = chained(config(tmp_path), store, clock)
    shim.authenticate(ALICE, code(PRIMARY, clock))
    backup = code(BACKUP, clock)
    assert shim.verify_factor(ALICE, backup).authenticated
    clock.now += 30  # a new attempt, a new primary code; the old backup code again
    shim.authenticate(ALICE, code(PRIMARY, clock))
    replayed = shim.verify_factor(ALICE, backup)
    assert not replayed.authenticated and "time step" in replayed.detail


def test_a_restart_keeps_the_chains_lockout_and_floors(tmp_path: Path) -> None:
    clock = Clock()
    settings = config(tmp_path, policy={"required_steps": 2, "max_failures": 2})
    store = StateStore(tmp_path / "storage")
    shim = chained(settings, store, clock)
    for _ in range(2):
        clock.now += 30
        shim.authenticate(ALICE, code(PRIMARY, clock))
        assert not shim.verify_factor(ALICE, "000000").authenticated
    store.close()
    store = StateStore(tmp_path / "storage")  # the daemon restarted
    try:
        clock.now += 30
        again = chained(settings, store, clock).authenticate(ALICE, code(PRIMARY, clock))
        assert again.result is AuthResult.LOCKED_OUT
    finally:
        store.close()


def test_a_technician_with_too_few_factors_is_refused(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    shim = chained(config(tmp_path, policy={"required_steps": 4}), store, clock)
    refused = shim.authenticate(ALICE, code(PRIMARY, clock))
    assert not refused.authenticated and "needs 3 more factor(s)" in refused.detail


def test_random_order_does_not_follow_pythons_random(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    policy = {"mode": "random", "required_steps": 2, "max_failures": 100}
    settings = config(tmp_path, policy=policy)
    seen = set()
    for _ in range(40):
        random.seed(0)
        clock.now += 30
        shim = chained(settings, store, clock)
        shim.authenticate(ALICE, code(PRIMARY, clock))
        seen.add(shim.next_factor(ALICE))
        shim.verify_factor(ALICE, "000000")  # a failure: the next attempt draws anew
    assert seen == {"Backup token", "Desk token"}  # 2**-39 to see one only by chance


def test_factors_enrolled_in_the_state_db_are_asked_for(tmp_path: Path, store: StateStore) -> None:
    clock = Clock()
    settings = parse_settings(
        {
            "shim": {"id": "shim-1"},
            "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
            "storage": {"root": str(tmp_path / "storage")},
        }
    )
    record = enrol(settings, store, "carol@example.org")
    uri = enrol_factor(settings, store, "carol@example.org", "Phone 2")
    assert "carol%40example.org%20%28Phone%202%29" in uri
    second = uri.split("secret=")[1].split("&")[0]
    shim = chained(settings, store, clock)
    assert shim.authenticate("carol@example.org", code(record.totp_secret, clock)).authenticated
    assert shim.next_factor("carol@example.org") == "Phone 2"
    assert shim.verify_factor("carol@example.org", code(second, clock)).authenticated
    assert shim.next_factor("carol@example.org") is None


def test_breakglass_needs_no_chain_even_under_a_policy(tmp_path: Path, store: StateStore) -> None:
    """The quorum that released its code is the break-glass login's MFA: a
    policy of three steps does not ask it for factors it cannot have."""
    clock = Clock()
    provision(store, DESK, {"groups": {}}, clock.now, "admin@example.org")
    shim = chained(config(tmp_path, policy={"required_steps": 3}), store, clock)
    opened = shim.authenticate(BREAKGLASS_ID, code(DESK, clock))
    assert opened.authenticated and shim.next_factor(BREAKGLASS_ID) is None
    again = shim.authenticate(BREAKGLASS_ID, code(DESK, clock))
    assert again.result is AuthResult.REPLAY  # each released code once


def test_no_technician_may_take_the_breakglass_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved for break-glass"):
        parse_settings(
            {
                "shim": {"id": "shim-1"},
                "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
                "storage": {"root": str(tmp_path)},
                "technicians": [{"technician_id": BREAKGLASS_ID, "totp_secret": PRIMARY}],
            }
        )
