"""Operators' login (password + TOTP, one generic failure, the gate's replay
and lockout rules), sessions with CSRF, API tokens and roles: a wrong role
gets 403 and changes nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from central.kit import ManualClock, SimShim, code_at
from central.test_ingest import snapshot
from shimmfa.central import access
from shimmfa.central.context import Central
from shimmfa.central.operators import create_operator

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test password


@pytest.fixture
def operator(central: Central) -> str:
    _, secret = create_operator(
        central, "alice", role="clinical_engineering", password=PASSWORD, actor="test"
    )
    return secret


def login(client: TestClient, password: str, code: str, who: str = "alice") -> int:
    answer = client.post(
        "/api/v1/login", json={"operator_id": who, "password": password, "code": code}
    )
    if answer.status_code != 200:
        assert answer.json() == {"code": "invalid_credentials", "message": "invalid credentials"}
    return answer.status_code


def test_login_sets_a_strict_httponly_cookie_and_returns_a_csrf_token(
    client: TestClient, clock: ManualClock, operator: str
) -> None:
    answer = client.post(
        "/api/v1/login",
        json={"operator_id": "alice", "password": PASSWORD, "code": code_at(operator, clock())},
    )
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert answer.json()["role"] == "clinical_engineering"
    assert len(answer.json()["csrf_token"]) >= 32
    me = client.get("/api/v1/me").json()
    assert me == {"kind": "operator", "name": "alice", "role": "clinical_engineering"}


def test_every_failure_is_the_same_reply(
    client: TestClient, clock: ManualClock, operator: str
) -> None:
    good = code_at(operator, clock())
    wrong = f"{(int(good) + 1) % 1000000:06d}"
    assert login(client, "wrong password", good) == 401
    assert login(client, PASSWORD, wrong) == 401
    assert login(client, PASSWORD, "abc") == 401
    assert login(client, PASSWORD, good, who="mallory") == 401
    too_long = {"operator_id": "x" * 200, "password": PASSWORD, "code": good}
    assert client.post("/api/v1/login", json=too_long).status_code == 422  # schema, not login


def test_a_code_is_accepted_once(client: TestClient, clock: ManualClock, operator: str) -> None:
    code = code_at(operator, clock())
    assert login(client, PASSWORD, code) == 200
    assert login(client, PASSWORD, code) == 401  # replay
    clock.advance(30)
    assert login(client, PASSWORD, code_at(operator, clock())) == 200


def test_five_failures_lock_the_operator_out(
    client: TestClient, clock: ManualClock, operator: str
) -> None:
    for _ in range(5):
        assert login(client, "wrong", "000000") == 401
    assert login(client, PASSWORD, code_at(operator, clock())) == 401  # locked
    clock.advance(301)
    assert login(client, PASSWORD, code_at(operator, clock())) == 200


def test_failed_logins_are_audited_with_the_reason(
    client: TestClient, clock: ManualClock, operator: str, admin: dict[str, str]
) -> None:
    login(client, "wrong", code_at(operator, clock()))
    client.cookies.clear()
    items = client.get(
        "/api/v1/events", params={"kind": "operator_login_failed"}, headers=admin
    ).json()["items"]
    assert items[0]["fields"]["operator_id"] == "alice"
    assert "wrong password" in items[0]["fields"]["detail"]


def test_a_cookie_session_needs_the_csrf_token_to_change_anything(
    client: TestClient, clock: ManualClock, operator: str, shim: SimShim
) -> None:
    answer = client.post(
        "/api/v1/login",
        json={"operator_id": "alice", "password": PASSWORD, "code": code_at(operator, clock())},
    )
    csrf = answer.json()["csrf_token"]
    window = {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z", "reason": "x"}
    path = f"/api/v1/shims/{shim.shim_id}/maintenance"
    refused = client.post(path, json=window)
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf")
    wrong = client.post(path, json=window, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    assert client.get(path).json() == []  # reading needs no CSRF token
    made = client.post(path, json=window, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    assert client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/shims").status_code == 401


@pytest.mark.parametrize("role", ["clinical_engineering", "infosec", "auditor"])
def test_a_wrong_role_gets_403_and_nothing_changes(
    client: TestClient, central: Central, shim: SimShim, tokens: dict[str, str], role: str
) -> None:
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    before = snapshot(central, "shim-a")
    for method, path, body in [
        ("POST", "/api/v1/shims", SimShim("shim-z").registration()),
        ("DELETE", "/api/v1/shims/shim-a", None),
        ("POST", "/api/v1/shims/shim-a/accept-reset", None),
    ]:
        answer = client.request(method, path, json=body, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (403, "forbidden"), path
    window = {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z", "reason": "x"}
    answer = client.post("/api/v1/shims/shim-a/maintenance", json=window, headers=headers)
    assert answer.status_code == (201 if role == "clinical_engineering" else 403)
    if role != "clinical_engineering":
        assert snapshot(central, "shim-a") == before
    assert client.get("/api/v1/shims/shim-a", headers=headers).status_code == 200


def test_a_revoked_token_stops_working_at_once(
    client: TestClient, central: Central, tokens: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {tokens['auditor']}"}
    assert client.get("/api/v1/shims", headers=headers).status_code == 200
    access.revoke_token(central, "auditor-token", actor="test")
    assert client.get("/api/v1/shims", headers=headers).status_code == 401
