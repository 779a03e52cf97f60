"""Break-glass in Debian's chromium against a real `shimmfa central serve`:
a clinical engineer requests the code (keyboard only), keeps the KEK the
page shows once; a clinical holder and an infosec holder each paste their
Toc sealed to the request's TEK (a mistake is said next to the field);
the requester gets the code, once, and it is the shim's TOTP code; the
shim's break-glass events open a review that both departments sign off.
Every page passes axe-core (vendored) with no serious or critical
violation; screenshots are kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.breakglass_kit import Deal
from central.kit import SimShim, code_at
from central.server import CentralServer
from central.test_reviews import breakglass_events
from shimmfa.central import access
from shimmfa.central.context import Central
from shimmfa.central.operators import create_operator
from shimmfa.central.settings import CentralSettings
from ui.conftest import check_accessibility, log_in, new_page, snap

pytestmark = pytest.mark.ui

PASSWORD = "break-glass test password"  # noqa: S105 - throwaway
PEOPLE = {"rita": "clinical_engineering", "ann": "clinical_engineering", "ivan": "infosec"}


class Ward:
    """A shim with a registered deal, the operators who use it, bob's token."""

    def __init__(self, server: CentralServer) -> None:
        self.server = server
        self.sim = SimShim("icu-pump-9")
        self.deal = Deal()
        with server.client() as admin:
            answer = admin.post("/api/v1/shims", json=self.sim.registration(location="ICU 3"))
        assert answer.status_code == 201, answer.text
        self.sim.credential = answer.json()["credential"]
        with server.client(self.sim.credential) as shim:
            answer = shim.post(f"/api/v1/shims/{self.sim.shim_id}/breakglass",
                               json=self.deal.record())  # fmt: skip
        assert answer.status_code == 201, answer.text
        central = Central(CentralSettings(database_url=server.database_url))
        try:
            self.secrets = {
                name: create_operator(central, name, role=role, password=PASSWORD,
                                      actor="test")[1]
                for name, role in PEOPLE.items()
            }  # fmt: skip
            self.bob = access.create_token(central, "bob", "clinical_engineering", actor="t")[1]
        finally:
            central.close()

    def page_of(self, browser: Any, name: str) -> Any:
        """A browser context of its own, logged in as `name` (once each: a
        code is accepted once)."""
        page = new_page(browser, self.server)
        log_in(page, name, PASSWORD, self.secrets[name], time.time())
        return page


@pytest.fixture(scope="module")
def ward(server: CentralServer) -> Ward:
    return Ward(server)


@pytest.fixture(scope="module")
def pages(browser: Any, ward: Ward) -> Iterator[dict[str, Any]]:
    """Each person's own browser, logged in once for the module (a code is
    accepted once)."""
    made = {name: ward.page_of(browser, name) for name in PEOPLE}
    yield made
    for page in made.values():
        page.context.close()


def test_a_request_approved_by_both_departments_shows_the_code_once(
    ward: Ward, pages: dict[str, Any], artifacts: Path
) -> None:
    page = pages["rita"]
    page.get_by_role("link", name="Break-glass").click()
    page.get_by_role("heading", name="Request a break-glass code").wait_for()
    check_accessibility(page, "break-glass")
    page.get_by_label("Shim ID").focus()  # the form, by keyboard alone
    page.keyboard.type(ward.sim.shim_id)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-ttl_minutes"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-reason"
    page.keyboard.type("Pump 9 occluded; vendor on site without an enrolment")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Request break-glass"
    snap(page, artifacts, "20-breakglass-new")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Your KEK: keep it now, it is shown once").wait_for()
    check_accessibility(page, "the KEK, once")
    snap(page, artifacts, "21-breakglass-kek-once")
    kek = page.get_by_label("KEK of request").input_value().strip()
    page.get_by_role("link", name="Go to request").click()
    tek = page.locator("#tek").inner_text().strip()
    request_url = page.url
    assert kek not in page.content()

    ann = pages["ann"]
    ann.get_by_role("link", name="Break-glass").click()
    awaiting = ann.get_by_role("region", name="Awaiting your approval")
    awaiting.get_by_role("link", name=ward.sim.shim_id, exact=False).click()
    ann.get_by_label("Your Toc, sealed to this request's TEK").fill("my toc, in clear")
    ann.get_by_role("button", name="Send my approval").click()
    error = ann.locator("#e-encrypted_toc")
    assert "not an ASCII-armored age file" in error.inner_text()
    check_accessibility(ann, "approval refused, in words")
    snap(ann, artifacts, "22-breakglass-approval-error")
    ann.get_by_label("Your Toc, sealed to this request's TEK").fill(ward.deal.sealed("ann", tek))
    ann.get_by_role("button", name="Send my approval").click()
    ann.locator('tr[data-group="clinical"]').get_by_text("operator:ann").wait_for()
    check_accessibility(ann, "approvals")

    with ward.server.client(ward.bob) as bob:  # bob approves through the API
        number = request_url.rsplit("/", 1)[1]
        answer = bob.post(f"/api/v1/breakglass/requests/{number}/approvals",
                          json={"encrypted_toc": ward.deal.sealed("bob", tek)})  # fmt: skip
        assert answer.status_code == 201, answer.text
    ivan = pages["ivan"]
    ivan.goto(request_url)
    ivan.get_by_label("Your Toc, sealed to this request's TEK").fill(ward.deal.sealed("ivan", tek))
    ivan.get_by_role("button", name="Send my approval").click()
    ivan.locator('tr[data-group="infosec"]').get_by_text("enough").wait_for()
    snap(ivan, artifacts, "23-breakglass-approvals")

    page.goto(request_url)
    assert page.locator('tr[data-group="clinical"]').get_by_text("enough").is_visible()
    page.get_by_label("Your KEK").fill(kek)
    before = time.time()
    page.get_by_role("button", name="Get the code").click()
    page.get_by_role("heading", name="The code, shown once").wait_for()
    shown = page.locator("#breakglass-code").inner_text().strip()
    assert shown in {code_at(ward.deal.secret, at) for at in (before, time.time())}
    check_accessibility(page, "the code, once")
    snap(page, artifacts, "24-breakglass-code-once")
    page.goto(request_url)
    assert shown not in page.content() and "released" in page.locator("h1").inner_text()


def test_both_departments_sign_off_the_review(
    ward: Ward, pages: dict[str, Any], artifacts: Path
) -> None:
    with ward.server.client(ward.sim.credential) as shim:
        answer = shim.post("/api/v1/events", json={"events": breakglass_events(ward.sim)})
        assert answer.status_code == 200, answer.text
    for name in ("ann", "ivan"):
        page = pages[name]
        page.get_by_role("link", name="Reviews").click()
        check_accessibility(page, "reviews")
        if name == "ann":
            snap(page, artifacts, "25-reviews-open")
        page.locator("tr[data-review] a").first.click()
        if name == "ann":
            page.get_by_role("button", name="Sign off").click()
            assert "write your review" in page.locator("#e-comment").inner_text()
            check_accessibility(page, "sign-off refused, in words")
        page.get_by_label("Your review comment").fill(f"{name}: recording and reason checked")
        page.get_by_role("button", name="Sign off").click()
        page.get_by_text(f"signed by operator:{name}").wait_for()
        check_accessibility(page, "review")
        if name == "ivan":
            assert "closed" in page.locator("h1").inner_text()
            snap(page, artifacts, "26-review-closed")
