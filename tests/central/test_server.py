"""The real `shimmfa central serve` (uvicorn, TLS) from `server.py`: it
refuses to start on an uninitialised database (one line, exit 2), serves
HTTPS that the throwaway CA verifies, survives a restart, and with two
workers on PostgreSQL raises one `missing` alarm, not two, within three
periods + 5 s."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from central.kit import SimShim
from central.postgres import PostgresServer
from central.server import SHIMMFA, CentralServer
from waiting import wait_for

pytestmark = pytest.mark.e2e


def test_serve_refuses_a_database_without_the_schema(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SHIMMFA), "central", "serve", "--database-url", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "shimmfa central init" in done.stderr


def test_a_real_server_over_tls_takes_heartbeats_and_survives_a_restart(tmp_path: Path) -> None:
    sim = SimShim("shim-tls")
    with CentralServer(tmp_path).running() as server:
        sim.credential = server.register_shim("shim-tls", sim.public_key, period=30)
        with server.client(sim.credential) as client:
            assert client.post("/api/v1/heartbeats", json=sim.heartbeat()).status_code == 200
        server.restart()
        with server.client(sim.credential) as client:
            assert client.post("/api/v1/heartbeats", json=sim.heartbeat()).status_code == 200
        with server.client() as client:
            shim = client.get("/api/v1/shims/shim-tls").json()
        assert (shim["status"], shim["seq"]) == ("ok", 2)


def test_two_workers_on_postgresql_raise_one_missing_alarm(
    tmp_path: Path, pg_server: PostgresServer, pg_url: str
) -> None:
    period = 0.5
    sim = SimShim("shim-2w")
    server = CentralServer(tmp_path, database_url=pg_url, workers=2)
    with server.running():
        sim.credential = server.register_shim("shim-2w", sim.public_key, period=period)
        with server.client(sim.credential) as shim_client:
            assert shim_client.post("/api/v1/heartbeats", json=sim.heartbeat()).status_code == 200
        last = time.monotonic()
        with server.client() as client:

            def missing() -> list[object]:
                answer = client.get("/api/v1/events", params={"kind": "missing"})
                items: list[object] = answer.json()["items"]
                return items

            wait_for(missing, "a missing alarm", timeout=3 * period + 5)
            detected = time.monotonic() - last
            assert detected <= 3 * period + 5
            # both workers keep evaluating for a while: still one alarm
            status = client.get("/api/v1/shims/shim-2w").json()["status"]
            wait_for(lambda: time.monotonic() - last > 3 * period + 3, "a few more passes")
            assert len(missing()) == 1
            assert status == "missing"
