"""The fleet monitor on a manual clock: `missing` after three periods (once),
`recovered` with the gap, `rebooted`, maintenance windows, `stopped`,
`state_reset`, one evaluator at a time, pruning, forwarding to the SIEM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.kit import ManualClock, SimShim
from shimmfa.central.context import Central
from shimmfa.central.models import HeartbeatRow
from shimmfa.central.monitor import Monitor
from shimmfa.central.settings import CentralSettings
from shimmfa.central.siem import Forwarder
from waiting import wait_for

PERIOD = 60.0


def alarms(client: TestClient, admin: dict[str, str], kind: str | None = None) -> list[Any]:
    params = {"source": "central", "limit": 1000}
    items = client.get("/api/v1/events", params=params, headers=admin).json()["items"]
    wanted = kind or ("missing", "recovered", "rebooted", "tampered", "state_reset")
    return [e for e in items if e["kind"] in wanted]


def status(client: TestClient, admin: dict[str, str]) -> str:
    return str(client.get("/api/v1/shims/shim-a", headers=admin).json()["status"])


def beat(client: TestClient, shim: SimShim, **kwargs: Any) -> None:
    answer = client.post("/api/v1/heartbeats", json=shim.heartbeat(**kwargs), headers=shim.auth)
    assert answer.status_code == 200, answer.text


def test_missing_after_three_periods_once_then_recovered_with_the_gap(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, admin: dict[str, str]
) -> None:
    monitor = Monitor(central)
    beat(client, shim)
    assert status(client, admin) == "ok"
    clock.advance(PERIOD * 1.6)
    assert status(client, admin) == "late"
    clock.advance(PERIOD * 3 - PERIOD * 1.6 - 0.01)
    monitor.run_once()
    assert alarms(client, admin) == []
    clock.advance(0.01)
    assert monitor.run_once().alarms == 1
    assert monitor.run_once().alarms == 0
    missing = alarms(client, admin)
    assert [a["kind"] for a in missing] == ["missing"]
    assert missing[0]["fields"]["silent_s"] == pytest.approx(3 * PERIOD)
    assert missing[0]["severity"] == 1
    assert status(client, admin) == "missing"
    clock.advance(100)
    beat(client, shim)
    monitor.run_once()
    recovered = alarms(client, admin, "recovered")
    assert recovered[0]["fields"]["gap_s"] == pytest.approx(3 * PERIOD + 100)
    assert status(client, admin) == "ok"
    assert alarms(client, admin, "rebooted") == []


def test_a_boot_count_jump_without_stopping_is_rebooted(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, admin: dict[str, str]
) -> None:
    monitor = Monitor(central)
    beat(client, shim)
    shim.reboot()
    clock.advance(5)
    beat(client, shim)
    monitor.run_once()
    rebooted = alarms(client, admin, "rebooted")
    assert len(rebooted) == 1
    assert rebooted[0]["fields"]["previous_boot_count"] == 1
    assert rebooted[0]["fields"]["boot_count"] == 2
    assert "unexpected absence" in rebooted[0]["fields"]["reason"]


def test_a_maintenance_window_holds_the_alarm_until_it_ends(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, admin: dict[str, str]
) -> None:
    monitor = Monitor(central)
    beat(client, shim)
    window = {"start": clock() - 1, "end": clock() + 10 * PERIOD, "reason": "firmware update"}
    answer = client.post("/api/v1/shims/shim-a/maintenance", json=window, headers=admin)
    assert answer.status_code == 201, answer.text
    clock.advance(5 * PERIOD)
    monitor.run_once()
    assert alarms(client, admin) == []
    assert status(client, admin) == "maintenance"
    clock.advance(5 * PERIOD + 1)
    monitor.run_once()
    assert [a["kind"] for a in alarms(client, admin)] == ["missing"]
    windows = client.get("/api/v1/shims/shim-a/maintenance", headers=admin).json()
    path = f"/api/v1/shims/shim-a/maintenance/{windows[0]['id']}"
    assert client.delete(path, headers=admin).status_code == 204
    assert client.delete(path, headers=admin).status_code == 404


def test_a_stopped_shim_is_not_missing_and_its_restart_is_no_reboot_alarm(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, admin: dict[str, str]
) -> None:
    monitor = Monitor(central)
    beat(client, shim)
    body = {"events": [shim.event("shim_stopping", reason="shutdown")]}  # after the beat
    assert client.post("/api/v1/events", json=body, headers=shim.auth).status_code == 200
    clock.advance(10 * PERIOD)
    monitor.run_once()
    assert status(client, admin) == "stopped"
    assert alarms(client, admin) == []
    shim.reboot()
    beat(client, shim)
    monitor.run_once()
    assert status(client, admin) == "ok"
    assert alarms(client, admin) == []


def test_a_shim_in_state_reset_raises_no_missing_alarm(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, admin: dict[str, str]
) -> None:
    monitor = Monitor(central)
    shim.boot_count = 3
    beat(client, shim)
    client.post("/api/v1/heartbeats", json=shim.heartbeat(boot_count=1), headers=shim.auth)
    clock.advance(10 * PERIOD)
    monitor.run_once()
    assert [a["kind"] for a in alarms(client, admin)] == ["state_reset"]
    assert status(client, admin) == "state_reset"


def test_a_tampered_heartbeat_raises_one_alarm(
    client: TestClient, central: Central, shim: SimShim, admin: dict[str, str]
) -> None:
    monitor = Monitor(central)
    beat(client, shim, state="tampered")
    beat(client, shim, state="tampered")
    monitor.run_once()
    monitor.run_once()
    assert [a["kind"] for a in alarms(client, admin)] == ["tampered"]
    assert status(client, admin) == "tampered"
    beat(client, shim, state="ok", at=shim_time_later())
    assert status(client, admin) == "ok"


def shim_time_later() -> float:
    import time

    return time.time() + 5


def test_one_evaluator_at_a_time_and_a_dead_ones_lease_is_taken_over(
    central: Central, clock: ManualClock
) -> None:
    first, second = Monitor(central, "first"), Monitor(central, "second")
    assert first.run_once().held
    assert not second.run_once().held
    assert first.run_once().held
    clock.advance(central.settings.lease_ttl + 0.1)  # first died
    assert second.run_once().held
    assert not first.run_once().held
    second.release()
    assert first.run_once().held


def test_old_heartbeats_are_pruned_in_batches(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim
) -> None:
    for _ in range(5):
        beat(client, shim)
    clock.advance(central.settings.heartbeat_retention + 1)
    beat(client, shim)
    monitor = Monitor(central)
    assert monitor.run_once().pruned >= 5
    with central.sessions() as session:
        assert session.scalar(select(func.count()).select_from(HeartbeatRow)) == 1


def test_alarms_are_forwarded_to_the_siem_with_the_shims_senders(
    database_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    siem = tmp_path / "siem.jsonl"
    settings = CentralSettings(
        database_url=database_url, siem_transport="file", siem_path=str(siem)
    )
    central = Central(settings, clock=clock)
    from central.kit import SimShim as Sim
    from shimmfa.central.registry import register_shim

    sim = Sim("shim-f")
    register_shim(central, **sim.registration(), actor="test")
    forwarder = Forwarder(central, idle_poll=0.05)
    forwarder.start()
    try:
        wait_for(lambda: siem.exists() and siem.read_text(), "the SIEM file")
        kinds = [json.loads(line)["kind"] for line in siem.read_text().splitlines()]
        assert "shim_registered" in kinds
    finally:
        forwarder.stop()
        central.close()
