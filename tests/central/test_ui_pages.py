"""The web UI served by the app (SQLite and PostgreSQL), without a browser:
login with password + code (one generic failure), every page renders for
every role, forms need the session's CSRF token, a wrong role gets a 403
page and nothing changes, the enrolment page shows the secret once, and
refusals come back in words next to their field. The browser tests
(tests/ui) drive the same pages in chromium."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from central.kit import ManualClock, SimShim, code_at
from shimmfa.central.access import Principal
from shimmfa.central.context import Central
from shimmfa.central.factors import confirm_factor, enrol_factor
from shimmfa.central.operators import TotpLogin, create_operator

PASSWORD = "a long test password"  # noqa: S105 - a test password


def ui_login(client: TestClient, central: Central, clock: ManualClock, role: str) -> str:
    """Log in through the form as a new operator of `role` (an admin also
    gives the second factor, on its own screen); the CSRF token."""
    _, secret = create_operator(central, role, role=role, password=PASSWORD, actor="test")
    second = None
    if central.settings.factors_for(role):
        cli = Principal("operator", "cli:test", "admin")
        made = enrol_factor(central, TotpLogin(central), cli, role, "second", label="Phone 2")
        confirm_factor(central, cli, role, "second", code_at(made.secret, clock()))
        second = made.secret
    clock.advance(30)
    answer = client.post(
        "/ui/login",
        data={"operator_id": role, "password": PASSWORD, "code": code_at(secret, clock())},
        follow_redirects=False,
    )
    if second is not None:
        assert answer.status_code == 200 and "Next factor: Phone 2" in answer.text
        assert "shimmfa_session" not in client.cookies
        attempt = re.search(r'name="attempt" value="([^"]+)"', answer.text)
        assert attempt is not None
        answer = client.post(
            "/ui/login",
            data={"attempt": attempt.group(1), "code": code_at(second, clock())},
            follow_redirects=False,
        )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/fleet"
    return client.cookies["shimmfa_csrf"]


def test_a_page_without_a_session_goes_to_the_login(client: TestClient) -> None:
    answer = client.get("/ui/technicians", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=/ui/technicians"
    polled = client.get("/ui/fleet/live", headers={"HX-Request": "true"})
    assert polled.headers["hx-redirect"].startswith("/ui/login")
    page = client.get("/ui/login")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_every_login_failure_reads_the_same(
    client: TestClient, central: Central, clock: ManualClock
) -> None:
    _, secret = create_operator(central, "alice", role="admin", password=PASSWORD, actor="t")
    answers = [
        client.post("/ui/login", data={"operator_id": who, "password": pw, "code": code})
        for who, pw, code in [
            ("alice", "wrong", code_at(secret, clock())),
            ("alice", PASSWORD, "000000"),
            ("nobody", PASSWORD, code_at(secret, clock())),
        ]
    ]
    messages = {re.search(r'role="alert"[^>]*>([^<]+)<', a.text).group(1) for a in answers}  # type: ignore[union-attr]
    assert [a.status_code for a in answers] == [401, 401, 401] and len(messages) == 1
    assert "shimmfa_session" not in client.cookies


@pytest.mark.parametrize("role", ["admin", "clinical_engineering", "infosec", "auditor"])
def test_every_page_renders_for_every_role(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, role: str
) -> None:
    ui_login(client, central, clock, role)
    for path in [
        "/ui/fleet",
        "/ui/fleet/live",
        "/ui/shims/shim-a",
        "/ui/technicians",
        "/ui/sessions",
        "/ui/events",
        "/ui/audit",
        "/ui/events?kind=nonsense",
        "/ui/sessions?since=yesterday",
    ]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.headers["cache-control"] == "no-store"
    assert "Enrol a technician" in client.get("/ui/technicians").text or role in (
        "infosec",
        "auditor",
    )
    assert "YYYY-MM-DD, e.g." in client.get("/ui/sessions?since=yesterday").text


def test_forms_need_the_csrf_token_and_the_right_role(
    client: TestClient, central: Central, clock: ManualClock, admin: dict[str, str]
) -> None:
    csrf = ui_login(client, central, clock, "auditor")
    body = {"technician_id": "tech-1", "name": "N", "company": "C"}
    missing = client.post("/ui/technicians", data=body)
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong_role = client.post("/ui/technicians", data={**body, "csrf_token": csrf})
    assert wrong_role.status_code == 403 and "auditor role may not" in wrong_role.text
    assert client.get("/api/v1/technicians", headers=admin).json()["items"] == []
    assert client.post("/ui/logout", data={}).status_code == 403  # logging out needs it too
    out = client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert (
        out.status_code == 303
        and client.get("/ui/fleet", follow_redirects=False).status_code == 303
    )


def test_enrol_confirm_assign_and_revoke_through_the_forms(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim, admin: dict[str, str]
) -> None:
    csrf = ui_login(client, central, clock, "clinical_engineering")
    made = client.post(
        "/ui/technicians",
        data={"technician_id": "ada", "name": "Ada", "company": "Vendor", "csrf_token": csrf},
    )
    assert made.status_code == 200 and "shown once" in made.text
    secret = re.search(r"secret=([A-Z2-7]+)", made.text).group(1)  # type: ignore[union-attr]
    assert secret not in client.get("/ui/technicians/ada").text
    again = client.post(
        "/ui/technicians",
        data={"technician_id": "ada", "name": "Ada", "company": "Vendor", "csrf_token": csrf},
    )
    assert again.status_code == 409
    assert 'id="e-technician_id"' in again.text and "exists already" in again.text
    bad = client.post("/ui/technicians/ada/confirm", data={"code": "12", "csrf_token": csrf})
    assert bad.status_code == 422 and 'id="e-code"' in bad.text
    ok = client.post(
        "/ui/technicians/ada/confirm",
        data={"code": code_at(secret, clock()), "csrf_token": csrf},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    nowhere = client.post(
        "/ui/technicians/ada/assign", data={"kind": "shim", "target": "shim-zz", "csrf_token": csrf}
    )
    assert nowhere.status_code == 404 and 'id="e-target"' in nowhere.text
    client.post(
        "/ui/technicians/ada/assign", data={"kind": "shim", "target": "shim-a", "csrf_token": csrf}
    )
    view = client.get("/api/v1/technicians/ada", headers=admin).json()
    assert (view["state"], view["shims"]) == ("active", ["shim-a"])
    assert "ada" in client.get("/ui/shims/shim-a").text
    client.post("/ui/technicians/ada/revoke", data={"csrf_token": csrf})
    assert client.get("/api/v1/technicians/ada", headers=admin).json()["state"] == "revoked"
    audit = client.get("/ui/audit").text
    for words in (
        "technician enrolled",
        "technician confirmed",
        "technician assigned",
        "technician revoked",
        "operator:clinical_engineering",
    ):
        assert words in audit
