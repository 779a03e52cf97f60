"""The real thing end to end (issue 14): a real `shimmfa run` on PTYs
posting over HTTPS to a real `shimmfa central serve` (uvicorn with TLS on
localhost, a throwaway CA). Heartbeats arrive and verify with the key the
shim prints; a killed shim turns `missing` within 3 periods + 5 s, and a
restarted one `ok` with `recovered` and `rebooted`; central down for a
while loses and doubles nothing; a stopped shim is `stopped`."""

from __future__ import annotations

import base64
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml
from siem_file import read_events

from central.server import CentralServer
from shimmfa.core.heartbeat import verify_heartbeat
from waiting import wait_for

pytestmark = pytest.mark.e2e

PERIOD = 1.0
SHIM = "e2e-shim"


@pytest.fixture
def central(tmp_path: Path):
    with CentralServer(tmp_path / "central").running() as server:
        yield server


def public_key(rig) -> str:
    shown = rig.cli("keys", "init", "--config", str(rig.config))
    assert shown.returncode == 0, shown.stderr
    match = re.search(r"signing key \(Ed25519\): (ed25519:\S+)", shown.stdout)
    assert match is not None, shown.stdout
    return match[1]


def central_shim(make_shim, central: CentralServer, tmp_path: Path):
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        start=False,
        gate={"echo": False},
        tamper={"heartbeat_period": PERIOD},
        siem={"transport": "file", "path": str(siem)},
    )
    token = tmp_path / "central.token"
    central.register_shim(SHIM, public_key(rig), period=PERIOD, credential_file=token)
    rig.settings["shim"]["hardware_id"] = "hw-1"
    rig.settings["central"] = {
        "url": central.base_url,
        "token_file": str(token),
        "ca_file": str(central.ca_file),
    }
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    rig.siem = siem
    rig.start()
    return rig


def shim_row(central: CentralServer) -> dict:
    with central.client() as client:
        answer = client.get(f"/api/v1/shims/{SHIM}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def central_events(central: CentralServer, **filters: str) -> list[dict]:
    items, cursor = [], None
    with central.client() as client:
        while True:
            params = {"shim_id": SHIM, "limit": "500", **filters}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/events", params=params).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def wait_status(central: CentralServer, wanted: str, timeout: float) -> dict:
    return wait_for(
        lambda: (row := shim_row(central))["status"] == wanted and row,
        f"central to show {SHIM} {wanted}",
        timeout,
        detail=lambda: shim_row(central)["status"],
    )


def test_the_shim_heartbeats_to_central_goes_missing_comes_back_and_stops(
    make_shim, central: CentralServer, tmp_path: Path
):
    rig = central_shim(make_shim, central, tmp_path)
    row = wait_status(central, "ok", 15)
    assert row["boot_count"] == 1

    # What central stored verifies, as it stands, with the key the shim prints.
    with central.client() as client:
        beats = client.get(f"/api/v1/shims/{SHIM}/heartbeats").json()["items"]
    key = base64.b64decode(public_key(rig).partition(":")[2])
    for beat in beats:
        assert verify_heartbeat(beat["wire"], {SHIM: key}, {}).shim_id == SHIM

    # kill -9: missing within 3 periods + 5 s of the last heartbeat
    rig.daemon.signal_and_wait(signal.SIGKILL)
    last = time.monotonic()
    wait_status(central, "missing", 3 * PERIOD + 5 + 2)
    alarms = wait_for(
        lambda: central_events(central, source="central", kind="missing"),
        "the missing alarm",
        3 * PERIOD + 5 + 2,
    )
    assert time.monotonic() - last <= 3 * PERIOD + 5 + 1  # within the bound (+ poll slack)
    assert len(alarms) == 1

    # restarted: ok again, with recovered (the gap) and rebooted (no shim_stopping)
    rig.new_technician()
    rig.start()
    wait_status(central, "ok", 15)
    wait_for(
        lambda: (
            {"recovered", "rebooted"}
            <= {e["kind"] for e in central_events(central, source="central")}
        ),
        "the recovered and rebooted alarms",
        10,
    )
    (recovered,) = central_events(central, source="central", kind="recovered")
    assert recovered["fields"]["gap_s"] >= 3 * PERIOD

    # SIGTERM: shim_stopping reaches central, which shows the shim stopped
    code, elapsed = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0 and elapsed < 2
    wait_status(central, "stopped", 10)


def test_central_down_for_a_while_loses_and_doubles_nothing(
    make_shim, central: CentralServer, tmp_path: Path
):
    rig = central_shim(make_shim, central, tmp_path)
    wait_status(central, "ok", 15)
    central.stop()
    session = rig.login("bob@example.org")  # events made while central is down
    rig.tech.send(b"while central is away\r")
    rig.dev.read_until(b"while central is away\r")
    rig.tech.send(f"bob@example.org {rig.wrong_code('bob@example.org')}\r".encode())
    rig.tech.hangup()
    rig.daemon.wait_log(f"session closed session={session}")
    wait_for(
        lambda: any(e["kind"] == "session_end" for e in read_events(rig.siem)),
        "the SIEM to have the session's end (the SIEM is not held up by central)",
    )
    central.start()

    def everything_arrived() -> bool:
        sent = {e["event_id"] for e in read_events(rig.siem)}
        stored = {e["event_id"] for e in central_events(central, source="shim")}
        return sent <= stored

    wait_for(everything_arrived, "central to have every event the SIEM has", 30)
    stored = [e["event_id"] for e in central_events(central, source="shim")]
    assert len(stored) == len(set(stored))  # nothing doubled
    kinds = {e["kind"] for e in central_events(central, source="shim")}
    assert {"auth_success", "session_start", "session_end", "heartbeat"} <= kinds


def test_a_recovery_continues_above_the_boot_count_central_last_accepted(
    make_shim, central: CentralServer, tmp_path: Path
):
    rig = central_shim(make_shim, central, tmp_path)
    for boot in (1, 2):  # two boots central has seen
        wait_for(lambda b=boot: shim_row(central)["boot_count"] == b, f"boot {boot} at central")
        rig.daemon.signal_and_wait(signal.SIGTERM)
        rig.new_technician()
        rig.start(ready=False)
    wait_for(lambda: shim_row(central)["boot_count"] == 3, "boot 3 at central")
    rig.daemon.signal_and_wait(signal.SIGTERM)
    shutil.rmtree(rig.storage / "state")  # the state, and its anchor, gone
    (rig.storage / "keys" / "state.anchor").unlink()
    rig.settings["technicians"][0]["roles"] = ["admin"]
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    rig.new_technician()
    rig.start(ready=False)
    rig.tech.read_until(b"Locked: tamper:state_lost.")

    done = rig.cli(
        "state", "recover", "--config", str(rig.config), "--operator", "alice@example.org",
        "--code", rig.code("alice@example.org"), "--reason", "state/ and the anchor deleted",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "boot count above 3" in done.stdout  # central's, not the empty DB's 0
    rig.tech.read_until(b"<totp_code>\r\n> ")
    # Central saw boot 1 while the shim was locked: one state_reset alarm, not 409s.
    wait_status(central, "state_reset", 10)
    assert len(central_events(central, source="central", kind="state_reset")) == 1
    with central.client() as client:
        accepted = client.post(f"/api/v1/shims/{SHIM}/accept-reset")
    assert accepted.status_code == 200, accepted.text
    row = wait_for(
        lambda: (r := shim_row(central))["boot_count"] == 4 and r, "boot 4 accepted by central"
    )
    assert row["status"] == "ok"  # the recovered generation went on above central's 3
