"""Issue 17 end to end in a real browser: Debian's chromium (Playwright),
a real `shimmfa central serve` over TLS and a real `shimmfa run` on PTYs.
An admin logs in (password, code, second factor), enrols a technician in
the page (the secret read from its otpauth link), confirms a code and
assigns them to the running shim; the shim syncs them and they log in at
the PTY; the session's recording is uploaded and the player on its page
shows the device's text to an auditor; the admin revokes them in the page
and the shim refuses them at the PTY after its next sync. Screenshots of
each step are kept (tests/ui/artifacts)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
import yaml

from central.kit import code_at
from central.server import CentralServer
from e2e.conftest import ShimRig
from shimmfa.central.context import Central
from shimmfa.central.keys import load_keys
from shimmfa.central.operators import create_operator
from shimmfa.central.settings import CentralSettings
from ui.conftest import check_accessibility, log_in, snap
from waiting import wait_for

pytestmark = [pytest.mark.ui, pytest.mark.e2e]

SHIM = "icu-pump-9"
TECHNICIAN = "vera@pumps.example"
AUDITOR_PASSWORD = "auditor test password"  # noqa: S105 - throwaway
DEVICE_TEXT = b"VIP-3200 service console\r\nOCCLUSION SENSOR CALIBRATED\r\n"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    """Central over TLS: a shim talks to central only over https."""
    made = CentralServer(tmp_path_factory.mktemp("ui-sync") / "central", tls=True)
    with made.running():
        yield made


@pytest.fixture
def rig(tmp_path: Path, tls_server: CentralServer) -> Iterator[ShimRig]:
    """A shim registered at central (key and age recipient), pinning
    central's key, its recordings encrypted to central too; not started."""
    root = tmp_path / "rig"
    root.mkdir()
    made = ShimRig(root, {"gate": {"echo": False}, "tamper": {"heartbeat_period": 1.0}})
    try:
        shown = made.cli("keys", "init", "--config", str(made.config)).stdout
        public_key = re.search(r"(ed25519:\S+)", shown)
        recipient = re.search(r"(age1\S+)", shown)
        assert public_key and recipient, shown
        token = root / "central.token"
        tls_server.register_shim(SHIM, public_key[1], period=1.0, credential_file=token)
        with tls_server.client() as client:
            put = client.put(
                f"/api/v1/shims/{SHIM}/age-recipient", json={"age_recipient": recipient[1]}
            )
        assert put.status_code == 204, put.text
        keys = load_keys(tls_server.workdir / "central-keys")
        made.settings["shim"]["id"] = SHIM
        made.settings["central"] = {
            "url": tls_server.base_url,
            "token_file": str(token),
            "ca_file": str(tls_server.ca_file),
            "public_key": keys.public_key_text,
            "sync_period": 1,
        }
        made.settings["recording"] = {"recipients": [keys.recording_recipient]}
        made.config.write_text(yaml.safe_dump(made.settings, sort_keys=False), encoding="utf-8")
        yield made
    finally:
        problems = made.close()
        assert problems == [], problems


def new_tls_page(browser: Any, server: CentralServer) -> Any:
    """A page in a fresh context; the throwaway CA is not the browser's,
    so its certificate errors are ignored (only here, in the test)."""
    context = browser.new_context(
        base_url=server.base_url,
        ignore_https_errors=True,
        bypass_csp=True,
        viewport={"width": 1366, "height": 900},
    )
    context.set_default_timeout(15_000)
    return context.new_page()


def auditor(server: CentralServer) -> str:
    central = Central(CentralSettings(database_url=server.database_url))
    try:
        _, secret = create_operator(
            central, "audra", role="auditor", password=AUDITOR_PASSWORD, actor="test"
        )
    finally:
        central.close()
    return secret


def test_enrolled_in_the_browser_synced_to_a_real_shim_played_back_and_revoked(
    browser: Any, tls_server: CentralServer, rig: ShimRig, artifacts: Path
) -> None:
    server = tls_server
    rig.start()
    daemon = rig.daemon
    daemon.wait_log("technician bundle version", timeout=15)  # synced: nobody assigned yet

    # the admin: password, code and second factor; then enrol, confirm, assign
    admin = new_tls_page(browser, server)
    log_in(
        admin,
        server.admin_id,
        server.admin_password,
        server.admin_secret,
        time.time() + 30,
        server.admin_second,
    )
    admin.get_by_role("link", name="Technicians").click()
    admin.get_by_label("Technician ID", exact=True).fill(TECHNICIAN)
    admin.get_by_label("Name", exact=True).fill("Vera Field")
    admin.get_by_label("Company", exact=True).fill("Pumps Inc.")
    admin.get_by_role("button", name="Enrol").click()
    admin.get_by_role("heading", name="Scan this now: it is shown once").wait_for()
    snap(admin, artifacts, "sync-01-enrolled")
    uri = admin.locator("#otpauth-uri").get_attribute("href")
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    admin.get_by_label("Code (6 digits)").fill(code_at(secret, time.time()))
    admin.get_by_role("button", name="Confirm").click()
    admin.get_by_text("active", exact=True).first.wait_for()
    admin.get_by_label("Shim ID or group name").fill(SHIM)
    admin.get_by_role("button", name="Assign").click()
    admin.get_by_role("link", name=SHIM).first.wait_for()
    check_accessibility(admin, "technician assigned")
    snap(admin, artifacts, "sync-02-assigned")

    # the running shim picks the technician up at its next sync
    daemon.wait_log("(+1 -0 ~0)", timeout=15)
    totp = pyotp.TOTP(secret)
    session = rig.login(TECHNICIAN, totp.now())
    rig.tech.send(b"calibrate\r")
    rig.dev.read_until(b"calibrate\r")
    rig.dev.send(DEVICE_TEXT)
    rig.tech.read_until(DEVICE_TEXT)
    rig.tech.hangup()
    daemon.wait_log(f"recording {session} uploaded", timeout=20)

    # an auditor finds the session, verified, and plays it back
    page = new_tls_page(browser, server)
    log_in(page, "audra", AUDITOR_PASSWORD, auditor(server), time.time())
    page.get_by_role("link", name="Sessions").click()
    row = page.locator(f'tr[data-session="{session}"]')
    assert "valid" in row.inner_text() and TECHNICIAN in row.inner_text()
    snap(page, artifacts, "sync-03-sessions")
    row.get_by_role("link", name="valid play").click()
    player = page.locator("#player")
    wait_for(lambda: "OCCLUSION SENSOR CALIBRATED" in player.inner_text(), "the device's text", 15)
    check_accessibility(page, "recording")
    snap(page, artifacts, "sync-04-playback")
    page.context.close()

    # the admin revokes; at the shim's next sync the technician is refused
    admin.goto(f"/ui/technicians/{TECHNICIAN}")
    admin.get_by_role("button", name=f"Revoke {TECHNICIAN}").click()
    admin.get_by_text("Revoked: valid nowhere").wait_for()
    snap(admin, artifacts, "sync-05-revoked")
    admin.context.close()
    daemon.wait_log(f"technicians no longer valid here: {TECHNICIAN}", timeout=15)
    rig.new_technician()
    rig.tech.read_until(b"<totp_code>\r\n> ")
    rig.tech.send(f"{TECHNICIAN} {totp.at(time.time() + 30)}\r".encode())  # a code never used
    assert b"Auth fail: DENIED (invalid credentials)" in rig.tech.read_until(b")\r\n> ")
