"""The central web UI in Debian's chromium against a real `shimmfa central
serve`: an admin logs in with password + TOTP, enrols a technician
(reading the secret from the page's otpauth URI), confirms a code and
assigns them to a shim, whose bundle then holds them; the fleet page shows
a shim turning `missing` without a reload; an auditor plays back an
uploaded recording (made by the shim's real `SessionRecorder`, encrypted
to central's recording recipient) and the player shows the device's text;
revoking removes the technician from the shim's bundle. Every page passes
axe-core with no serious or critical violation; screenshots are kept."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyrage
import pytest
from pyrage import x25519

from central.kit import SimShim, code_at
from central.recording_kit import make_recording, upload
from central.server import CentralServer
from shimmfa.central.context import Central
from shimmfa.central.keys import load_keys
from shimmfa.central.operators import create_operator
from shimmfa.central.settings import CentralSettings
from ui.conftest import check_accessibility, log_in, new_page, snap
from waiting import wait_for

pytestmark = pytest.mark.ui

AUDITOR_PASSWORD = "auditor test password"  # noqa: S105 - throwaway


class Fleet:
    """What the tests share: the shim with its age identity, the auditor."""

    def __init__(self, server: CentralServer) -> None:
        self.server = server
        self.identity = x25519.Identity.generate()
        self.sim = SimShim("icu-pump-7")
        with server.client() as client:
            answer = client.post("/api/v1/shims", json={
                **self.sim.registration(period=1.0, location="ICU 3, bed 7"),
                "age_recipient": str(self.identity.to_public()),
            })  # fmt: skip
        assert answer.status_code == 201, answer.text
        self.sim.credential = answer.json()["credential"]
        central = Central(CentralSettings(database_url=server.database_url))
        try:
            _, self.auditor_secret = create_operator(
                central, "audrey", role="auditor", password=AUDITOR_PASSWORD, actor="test"
            )
        finally:
            central.close()
        self.keys = load_keys(server.workdir / "central-keys")

    def beat(self) -> None:
        with self.server.client(self.sim.credential) as client:
            assert client.post("/api/v1/heartbeats", json=self.sim.heartbeat()).status_code == 200

    def bundle(self) -> dict[str, Any]:
        with self.server.client(self.sim.credential) as client:
            answer = client.get(f"/api/v1/shims/{self.sim.shim_id}/technicians").json()
        assert answer["signed_by"] == self.keys.public_key_text
        signed = b"shimmfa technician bundle v1\n" + answer["bundle"].encode()
        self.keys.signing.public_key().verify(base64.b64decode(answer["sig"]), signed)
        document: dict[str, Any] = json.loads(
            pyrage.decrypt(answer["bundle"].encode(), [self.identity])
        )
        return document


@pytest.fixture(scope="module")
def fleet(server: CentralServer) -> Fleet:
    return Fleet(server)


@pytest.fixture(scope="module")
def admin_page(browser: Any, server: CentralServer) -> Iterator[Any]:
    """The admin, logged in once for the module: each code is accepted once
    (`central init` used the current one), so this login takes the next
    time step's code, which the server-fixed window of 1 accepts."""
    page = new_page(browser, server)
    log_in(
        page,
        server.admin_id,
        server.admin_password,
        server.admin_secret,
        time.time() + 30,
        server.admin_second,
    )
    yield page
    page.context.close()


def test_an_admin_logs_in_with_password_and_code(
    browser: Any, server: CentralServer, artifacts: Path, admin_page: Any
) -> None:
    page = new_page(browser, server)
    page.goto("/ui/fleet")
    page.wait_for_url("**/ui/login?next=/ui/fleet")
    check_accessibility(page, "login")
    snap(page, artifacts, "01-login")
    page.get_by_label("Operator ID").fill(server.admin_id)
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Authenticator code").fill("123456")
    page.get_by_role("button", name="Log in").click()
    assert "Invalid credentials" in page.get_by_role("alert").inner_text()
    check_accessibility(page, "login failed")
    snap(page, artifacts, "02-login-failed")
    page.context.close()
    page = admin_page  # logged in with password and the code (the fixture)
    page.goto("/ui/fleet")
    assert page.get_by_role("heading", name="Fleet").is_visible()
    status = page.evaluate(
        "fetch('/ui/technicians', {method: 'POST', body: new URLSearchParams("
        "{technician_id: 'x', name: 'n', company: 'c'})}).then(r => r.status)"
    )
    assert status == 403  # a form post without the session's CSRF token


def test_enrol_confirm_and_assign_a_technician(
    admin_page: Any, fleet: Fleet, artifacts: Path
) -> None:
    page = admin_page
    page.get_by_role("link", name="Technicians").click()
    check_accessibility(page, "technicians")
    page.get_by_label("Technician ID", exact=True).fill("ada@vendor")
    page.get_by_label("Name", exact=True).fill("Ada Field")
    page.get_by_label("Company", exact=True).fill("Pumps Inc.")
    page.get_by_role("button", name="Enrol").click()
    page.get_by_role("heading", name="Scan this now: it is shown once").wait_for()
    check_accessibility(page, "enrolled")
    snap(page, artifacts, "03-enrolled-qr-once")
    uri = page.locator("#otpauth-uri").get_attribute("href")
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    page.get_by_label("Code (6 digits)").fill("000000" if code_at(secret, time.time()) != "000000"
                                               else "111111")  # fmt: skip
    page.get_by_role("button", name="Confirm").click()
    assert "not accepted" in page.locator("#e-code").inner_text()  # the words, by the field
    page.get_by_label("Code from the technician's authenticator").fill(code_at(secret, time.time()))
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("active", exact=True).first.wait_for()
    page.get_by_label("Shim ID or group name").fill(fleet.sim.shim_id)
    page.get_by_role("button", name="Assign").click()
    page.get_by_role("link", name=fleet.sim.shim_id).first.wait_for()
    check_accessibility(page, "technician")
    snap(page, artifacts, "04-technician-assigned")
    people = fleet.bundle()["technicians"]
    assert [(t["technician_id"], t["totp_secret"]) for t in people] == [("ada@vendor", secret)]
    page.get_by_role("link", name="Technicians").click()
    row = page.locator('tr[data-technician="ada@vendor"]')
    assert "active" in row.inner_text() and fleet.sim.shim_id in row.inner_text()
    snap(page, artifacts, "05-technicians")


def test_the_fleet_shows_a_shim_turning_missing_without_a_reload(
    admin_page: Any, fleet: Fleet, artifacts: Path
) -> None:
    page = admin_page
    stop, twice = threading.Event(), threading.Event()

    def beating() -> None:
        beats = 0
        while not stop.is_set():
            fleet.beat()
            beats += 1
            if beats == 2:
                twice.set()  # the timeline below draws one point per heartbeat
            stop.wait(0.3)

    thread = threading.Thread(target=beating, daemon=True)
    thread.start()
    try:
        row = page.locator(f'tr[data-shim="{fleet.sim.shim_id}"]')
        page.goto("/ui/fleet")
        page.wait_for_function(
            "s => document.querySelector(`tr[data-shim=\"${s}\"]`)?.dataset.status === 'ok'",
            arg=fleet.sim.shim_id,
            timeout=10_000,
        )
        check_accessibility(page, "fleet")
        snap(page, artifacts, "06-fleet-ok")
        page.evaluate("window.__not_reloaded = true")
        assert twice.wait(timeout=10)
    finally:
        stop.set()
        thread.join()
    silenced = time.monotonic()
    page.wait_for_function(
        "s => document.querySelector(`tr[data-shim=\"${s}\"]`)?.dataset.status === 'missing'",
        arg=fleet.sim.shim_id,
        timeout=15_000,
    )
    assert time.monotonic() - silenced <= 3 * 1.0 + 5
    assert page.evaluate("window.__not_reloaded") is True  # htmx swapped the table
    assert "missing" in row.inner_text()
    snap(page, artifacts, "07-fleet-missing")
    row.get_by_role("link").click()
    page.get_by_role("heading", name="Heartbeat timeline").wait_for()
    assert page.locator("svg.timeline circle").count() >= 2
    check_accessibility(page, "shim")
    snap(page, artifacts, "08-shim")


def test_an_auditor_plays_back_an_uploaded_recording(
    browser: Any, server: CentralServer, fleet: Fleet, artifacts: Path, tmp_path: Path
) -> None:
    text = b"VIP-3200 service console\r\nPUMP CALIBRATION OK\r\n"
    session_id, data = make_recording(
        tmp_path / "shim", fleet.sim, [fleet.keys.recording_recipient], technician="ada@vendor",
        output=text,
    )  # fmt: skip
    with server.client(fleet.sim.credential) as client:
        assert upload(client, fleet.sim, session_id, data, chunk=700).status_code == 201
    page = new_page(browser, server)
    log_in(page, "audrey", AUDITOR_PASSWORD, fleet.auditor_secret, time.time())
    page.get_by_role("link", name="Sessions").click()
    row = page.locator(f'tr[data-session="{session_id}"]')
    assert "valid" in row.inner_text()
    check_accessibility(page, "sessions")
    snap(page, artifacts, "09-sessions")
    row.get_by_role("link", name="valid play").click()
    player = page.locator("#player")
    wait_for(lambda: "PUMP CALIBRATION OK" in player.inner_text(), "the device's text", 15)
    check_accessibility(page, "recording")
    snap(page, artifacts, "10-playback")
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON lines (the seed's layout)").click()
    assert b"session_footer" in Path(download.value.path()).read_bytes()
    page.get_by_role("link", name="Audit trail").click()
    trail = page.locator("table.grid").inner_text()
    assert "recording played" in trail and "operator:audrey" in trail
    check_accessibility(page, "audit")
    snap(page, artifacts, "11-audit")
    page.get_by_role("link", name="Events", exact=True).click()
    check_accessibility(page, "events")
    snap(page, artifacts, "12-events")
    page.context.close()


def test_revoking_removes_the_technician_from_the_bundle(
    admin_page: Any, fleet: Fleet, artifacts: Path
) -> None:
    assert [t["technician_id"] for t in fleet.bundle()["technicians"]] == ["ada@vendor"]
    page = admin_page
    page.goto("/ui/technicians/ada@vendor")
    page.get_by_role("button", name="Revoke ada@vendor").click()
    page.get_by_text("Revoked: valid nowhere").wait_for()
    snap(page, artifacts, "13-revoked")
    assert fleet.bundle()["technicians"] == []
