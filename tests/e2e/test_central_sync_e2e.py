"""The shim's sync with central end to end (issue 17): the real `shimmfa
run` on PTYs and a real `shimmfa central serve` over TLS. A technician
enrolled and assigned through central's API is synced to the running shim
and logs in at the port; the session's recording reaches central, verified,
and plays back the device's text; a revocation at central refuses the
technician at the port after the next sync; with central gone the shim
keeps its last good bundle and its config file's technicians, says so in
`shimmfa state status`, and SIGTERM stays prompt."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
import yaml

from central.server import CentralServer
from shimmfa.central.keys import load_keys
from waiting import wait_for

pytestmark = pytest.mark.e2e

SHIM = "e2e-shim"
DEVICE_TEXT = b"VIP-3200 service console: PUMP CALIBRATION OK\r\n"


@pytest.fixture
def central(tmp_path: Path):
    with CentralServer(tmp_path / "central").running() as server:
        yield server


def shim_keys(rig) -> tuple[str, str]:
    shown = rig.cli("keys", "init", "--config", str(rig.config))
    assert shown.returncode == 0, shown.stderr
    signing = re.search(r"signing key \(Ed25519\): (ed25519:\S+)", shown.stdout)
    recipient = re.search(r"age recipient:\s+(age1\S+)", shown.stdout)
    assert signing and recipient, shown.stdout
    return signing[1], recipient[1]


def synced_shim(make_shim, central: CentralServer, tmp_path: Path, **recording: Any):
    """A shim registered at central with its age recipient, pinning
    central's key, recordings encrypted to central too; not started."""
    rig = make_shim(start=False, gate={"echo": False}, tamper={"heartbeat_period": 1.0})
    public_key, recipient = shim_keys(rig)
    token = tmp_path / "central.token"
    central.register_shim(SHIM, public_key, period=1.0, credential_file=token)
    with central.client() as client:
        put = client.put(f"/api/v1/shims/{SHIM}/age-recipient", json={"age_recipient": recipient})
    assert put.status_code == 204, put.text
    keys = load_keys(central.workdir / "central-keys")
    rig.settings["central"] = {
        "url": central.base_url,
        "token_file": str(token),
        "ca_file": str(central.ca_file),
        "public_key": keys.public_key_text,
        "sync_period": 1,
    }
    rig.settings["recording"] = {"recipients": [keys.recording_recipient], **recording}
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    return rig


def enrol_and_assign(central: CentralServer, technician_id: str) -> pyotp.TOTP:
    """Through central's API, as an operator would: enrol, confirm one
    code from the authenticator, assign to the shim."""
    with central.client() as client:
        made = client.post(
            "/api/v1/technicians",
            json={"technician_id": technician_id, "name": "Ada Field", "company": "Pumps Inc."},
        )
        assert made.status_code == 201, made.text
        secret = parse_qs(urlparse(made.json()["otpauth_uri"]).query)["secret"][0]
        totp = pyotp.TOTP(secret)
        confirm = client.post(
            f"/api/v1/technicians/{technician_id}/confirm", json={"code": totp.now()}
        )
        assert confirm.status_code == 200, confirm.text
        assigned = client.post(
            f"/api/v1/technicians/{technician_id}/assignments", json={"shim_id": SHIM}
        )
        assert assigned.status_code == 201, assigned.text
    return totp


def recording_at_central(central: CentralServer, session_id: str) -> dict | None:
    with central.client() as client:
        items = client.get("/api/v1/recordings", params={"shim_id": SHIM}).json()["items"]
    return next((r for r in items if r["session_id"] == session_id), None)


def login_line(technician_id: str, code: str) -> bytes:
    return f"{technician_id} {code}\r".encode()


def test_a_technician_enrolled_at_central_logs_in_is_recorded_and_is_refused_once_revoked(
    make_shim, central: CentralServer, tmp_path: Path
):
    rig = synced_shim(make_shim, central, tmp_path, delete_after_upload=True)
    tid = "ada@vendor.example"
    totp = enrol_and_assign(central, tid)
    rig.start()
    rig.daemon.wait_log("technician bundle version", timeout=15)
    rig.daemon.wait_log("1 technician(s) from central")

    session = rig.login(tid, totp.now())
    rig.tech.send(b"status\r")
    rig.dev.read_until(b"status\r")
    rig.dev.send(DEVICE_TEXT)
    rig.tech.read_until(DEVICE_TEXT)
    rig.tech.hangup()
    row = wait_for(
        lambda: recording_at_central(central, session), "central to hold the recording", 20
    )
    assert (row["status"], row["technician_id"]) == ("valid", tid)
    auditor = central.shimmfa("token", "create", "--name", "aud", "--role", "auditor").strip()
    with central.client(auditor) as client:
        cast = client.get(f"/api/v1/recordings/{row['id']}/asciicast")
    assert cast.status_code == 200 and "PUMP CALIBRATION OK" in cast.text
    sessions = rig.storage / "sessions"
    wait_for(lambda: not list(sessions.glob(f"{session}_*.shrec")), "the local copy deleted", 10)

    with central.client() as client:
        assert client.post(f"/api/v1/technicians/{tid}/revoke").status_code == 200
    rig.daemon.wait_log(f"technicians no longer valid here: {tid}", timeout=15)
    rig.new_technician()
    rig.tech.read_until(b"<totp_code>\r\n> ")
    unused = totp.at(time.time() + 30)  # a code never used: refused for the revocation
    rig.tech.send(login_line(tid, unused))
    assert b"Auth fail: DENIED (invalid credentials)" in rig.tech.read_until(b")\r\n> ")
    assert tid.encode() not in rig.dev.received  # nothing of it reached the device


def test_with_central_gone_the_last_good_bundle_and_the_config_file_keep_working(
    make_shim, central: CentralServer, tmp_path: Path
):
    rig = synced_shim(make_shim, central, tmp_path)
    tid = "ben@vendor.example"
    totp = enrol_and_assign(central, tid)
    rig.start()
    rig.daemon.wait_log("1 technician(s) from central", timeout=15)
    central.stop()
    rig.daemon.wait_log("the last good bundle stays", timeout=10)

    rig.login(tid, totp.now())  # from the bundle held in the state DB
    rig.tech.hangup()
    rig.new_technician()
    rig.tech.read_until(b"<totp_code>\r\n> ")
    rig.login("alice@example.org")  # from the config file
    status = rig.cli("state", "status", "--config", str(rig.config))
    assert status.returncode == 0, status.stderr
    assert "technician bundle: version" in status.stdout and "1 technician(s)" in status.stdout
    assert "valid" in status.stdout and "FAILED" in status.stdout  # the last attempt failed
    code, elapsed = rig.daemon.signal_and_wait(signal.SIGTERM)
    assert code == 0 and elapsed < 2
