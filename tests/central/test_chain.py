"""Operators' MFA chains over HTTP (`/api/v1/login`, `/api/v1/login/factor`,
`/api/v1/chain/...`), on SQLite and PostgreSQL: the seed 003 demo's manual
checklist, and each of its holes closed (one secret passes no other factor,
no replay, no client window, no full-width digits, lockout, a restart keeps
lockout and floors, no re-enrolment without re-authentication, no current
code ever answered)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.kit import ManualClock, code_at
from shimmfa.central.access import Principal
from shimmfa.central.app import create_app
from shimmfa.central.context import Central
from shimmfa.central.factors import confirm_factor, enrol_factor
from shimmfa.central.operators import TotpLogin, create_operator
from shimmfa.central.settings import CentralSettings

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test password
SHIMMFA = Path(sys.executable).with_name("shimmfa")
GENERIC = {"code": "invalid_credentials", "message": "invalid credentials"}


@dataclass
class Person:
    operator_id: str
    secrets: dict[str, str]  # factor ID ("totp" for the first) -> base32 secret


def make_operator(
    central: Central, clock: ManualClock, who: str, role: str, factors: tuple[str, ...]
) -> Person:
    _, first = create_operator(central, who, role=role, password=PASSWORD, actor="test")
    person = Person(who, {"totp": first})
    cli = Principal("operator", "cli:test", "admin")
    for factor_id in factors:
        made = enrol_factor(
            central, TotpLogin(central), cli, who, factor_id, label=f"{factor_id} token"
        )
        confirm_factor(central, cli, who, factor_id, code_at(made.secret, clock()))
        person.secrets[factor_id] = made.secret
    return person


@pytest.fixture
def chained(database_url: str, clock: ManualClock) -> Iterator[Central]:
    """Central whose admins need two further factors, `second` then `third`."""
    settings = CentralSettings(database_url=database_url, pool_size=5, admin_factors="second,third")
    made = Central(settings, clock=clock)
    try:
        yield made
    finally:
        made.close()


def client_for(central: Central) -> TestClient:
    return TestClient(create_app(central.settings, central=central, monitor=False))


@pytest.fixture
def http(chained: Central) -> Iterator[TestClient]:
    with client_for(chained) as made:
        yield made


@pytest.fixture
def root(chained: Central, clock: ManualClock) -> Person:
    person = make_operator(chained, clock, "root", "admin", ("second", "third"))
    clock.advance(30)  # past the confirming codes' step
    return person


def start_login(http: TestClient, person: Person, at: float) -> dict[str, str]:
    answer = http.post(
        "/api/v1/login",
        json={
            "operator_id": person.operator_id,
            "password": PASSWORD,
            "code": code_at(person.secrets["totp"], at),
        },
    )
    assert answer.status_code == 202, answer.text
    assert "set-cookie" not in answer.headers  # no session before the chain completes
    body: dict[str, str] = answer.json()
    return body


def give(http: TestClient, token: str, code: str) -> tuple[int, dict[str, str]]:
    answer = http.post("/api/v1/login/factor", json={"login_token": token, "code": code})
    return answer.status_code, answer.json()


def full_login(http: TestClient, person: Person, clock: ManualClock) -> dict[str, str]:
    body = start_login(http, person, clock())
    for factor_id in ("second", "third"):
        status, body = give(
            http, body.get("login_token", ""), code_at(person.secrets[factor_id], clock())
        )
    assert status == 200, body
    return body


# -- the seed's checklist ---------------------------------------------------------------


def test_happy_path_logs_an_admin_in_after_every_factor(
    http: TestClient, root: Person, clock: ManualClock
) -> None:
    first = start_login(http, root, clock())
    assert first["next_factor_label"] == "second token" and first["steps"] == 2
    status, body = give(http, first["login_token"], code_at(root.secrets["second"], clock()))
    assert status == 202 and body["next_factor_label"] == "third token"
    assert http.get("/api/v1/me").status_code == 401  # still no session
    status, body = give(http, first["login_token"], code_at(root.secrets["third"], clock()))
    assert status == 200 and body["role"] == "admin"
    assert http.get("/api/v1/me").json()["name"] == "root"


def test_a_wrong_code_ends_the_login_and_the_chain_restarts_at_its_first_factor(
    http: TestClient, root: Person, clock: ManualClock
) -> None:
    first = start_login(http, root, clock())
    status, body = give(http, first["login_token"], "000000")
    assert (status, body) == (401, GENERIC)
    status, body = give(http, first["login_token"], code_at(root.secrets["second"], clock()))
    assert (status, body) == (401, GENERIC)  # that login is over
    clock.advance(30)
    again = start_login(http, root, clock())
    assert again["next_factor_label"] == "second token"


def test_step_up_wrong_code_resets_with_the_first_label_and_out_of_order_is_409(
    http: TestClient, root: Person, clock: ManualClock
) -> None:
    csrf = {"X-CSRF-Token": full_login(http, root, clock)["csrf_token"]}
    clock.advance(30)
    started = http.post("/api/v1/chain/users/root/attempt/start", headers=csrf)
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    assert started.json()["next_factor_label"] == "second token"

    def verify(factor_id: str, user_input: str) -> tuple[int, dict[str, object]]:
        body = {"session_id": session_id, "factor_id": factor_id, "user_input": user_input}
        answer = http.post("/api/v1/chain/attempt/verify", json=body, headers=csrf)
        return answer.status_code, answer.json()

    status, body = verify("third", code_at(root.secrets["third"], clock()))
    assert status == 409 and body["code"] == "chain_breached"
    assert body["message"] == "out-of-order step attempt: expected 'second' got 'third'"
    status, body = verify("second", "123")
    assert (status, body) == (
        200,
        {
            "success": False,
            "is_complete": False,
            "next_factor_label": "RESET -> restart with second token",
        },
    )
    status, body = verify("second", code_at(root.secrets["second"], clock()))
    assert (status, body["success"], body["next_factor_label"]) == (200, True, "third token")
    status, body = verify("third", code_at(root.secrets["third"], clock()))
    assert (status, body) == (200, {"success": True, "is_complete": True, "next_factor_label": ""})
    status, body = verify("third", code_at(root.secrets["third"], clock()))
    assert status == 404  # a completed attempt is gone


def test_starting_before_enrolment_is_400_listing_the_missing_factors(
    chained: Central, clock: ManualClock, database_url: str
) -> None:
    ed = make_operator(chained, clock, "ed", "clinical_engineering", ("backup",))
    clock.advance(30)
    with client_for(chained) as before:  # no factors for this role yet: one code logs in
        answer = before.post(
            "/api/v1/login",
            json={
                "operator_id": "ed",
                "password": PASSWORD,
                "code": code_at(ed.secrets["totp"], clock()),
            },
        )
        assert answer.status_code == 200
        cookies, csrf = dict(before.cookies), answer.json()["csrf_token"]
    stricter = CentralSettings(
        database_url=database_url, pool_size=5, operator_factors="backup,desk"
    )
    later = Central(stricter, clock=clock)
    try:
        with client_for(later) as after:
            after.cookies.update(cookies)
            answer = after.post(
                "/api/v1/chain/users/ed/attempt/start", headers={"X-CSRF-Token": csrf}
            )
            assert answer.status_code == 400
            assert answer.json() == {
                "code": "missing_enrollment",
                "message": "Missing enrollment for required factors: desk",
            }
    finally:
        later.close()


# -- the seed's holes, closed -----------------------------------------------------------


def test_one_factors_secret_does_not_pass_another(
    http: TestClient, root: Person, clock: ManualClock
) -> None:
    first = start_login(http, root, clock())
    status, body = give(http, first["login_token"], code_at(root.secrets["third"], clock()))
    assert (status, body) == (401, GENERIC)
    clock.advance(30)
    first = start_login(http, root, clock())
    status, _ = give(http, first["login_token"], code_at(root.secrets["totp"], clock()))
    assert status == 401


def test_a_code_accepted_once_is_refused_in_every_later_attempt_even_after_a_restart(
    chained: Central, http: TestClient, root: Person, clock: ManualClock
) -> None:
    second = code_at(root.secrets["second"], clock())
    full_login(http, root, clock)
    restarted = Central(chained.settings, clock=clock)  # a new process on the same database
    try:
        with client_for(restarted) as fresh:
            clock.advance(1)  # the same time step: `second` is within the window
            answer = fresh.post(
                "/api/v1/login",
                json={
                    "operator_id": "root",
                    "password": PASSWORD,
                    "code": code_at(root.secrets["totp"], clock() + 30),  # next step's: fresh
                },
            )
            assert answer.status_code == 202
            assert give(fresh, answer.json()["login_token"], second) == (401, GENERIC)
    finally:
        restarted.close()


def test_the_client_cannot_widen_the_window_and_full_width_digits_fail(
    http: TestClient, root: Person, clock: ManualClock
) -> None:
    first = start_login(http, root, clock())
    widened = {"login_token": first["login_token"], "code": "000000", "window": 10}
    assert http.post("/api/v1/login/factor", json=widened).status_code == 422
    old = code_at(root.secrets["second"], clock() - 90)  # three steps ago: outside window 1
    assert give(http, first["login_token"], old)[0] == 401
    clock.advance(30)
    first = start_login(http, root, clock())
    code = code_at(root.secrets["second"], clock())
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code)
    assert give(http, first["login_token"], full_width)[0] == 401


def test_guessing_is_locked_out_and_a_restart_keeps_the_lockout(
    chained: Central, http: TestClient, root: Person, clock: ManualClock
) -> None:
    csrf = {"X-CSRF-Token": full_login(http, root, clock)["csrf_token"]}
    clock.advance(30)
    started = http.post("/api/v1/chain/users/root/attempt/start", headers=csrf)
    session_id = started.json()["session_id"]
    for _ in range(chained.settings.max_failures):
        body = {"session_id": session_id, "user_input": "000000"}
        assert http.post("/api/v1/chain/attempt/verify", json=body, headers=csrf).status_code in (
            200,
            429,
        )
    good = {"session_id": session_id, "user_input": code_at(root.secrets["second"], clock())}
    locked = http.post("/api/v1/chain/attempt/verify", json=good, headers=csrf)
    assert locked.status_code == 429 and locked.json()["code"] == "locked_out"
    assert 0 < int(locked.headers["Retry-After"]) <= chained.settings.lockout_seconds

    restarted = Central(chained.settings, clock=clock)  # a new process on the same database
    try:
        with client_for(restarted) as fresh:
            fresh.cookies.update(dict(http.cookies))
            again = fresh.post("/api/v1/chain/attempt/verify", json=good, headers=csrf)
            assert again.status_code == 429  # still locked
    finally:
        restarted.close()


def test_a_locked_chain_refuses_the_login_with_the_generic_answer(
    http: TestClient,
    root: Person,
    clock: ManualClock,
    chained: Central,
    tokens_for_chained: dict[str, str],
) -> None:
    for _ in range(chained.settings.max_failures):
        first = start_login(http, root, clock())
        give(http, first["login_token"], "000000")
        clock.advance(30)
    answer = http.post(
        "/api/v1/login",
        json={
            "operator_id": "root",
            "password": PASSWORD,
            "code": code_at(root.secrets["totp"], clock()),
        },
    )
    assert (answer.status_code, answer.json()) == (401, GENERIC)
    bearer = {"Authorization": f"Bearer {tokens_for_chained['admin']}"}
    failed = http.get("/api/v1/events", params={"kind": "operator_login_failed"}, headers=bearer)
    details = [item["fields"]["detail"] for item in failed.json()["items"]]
    assert any("locked out" in detail for detail in details), details


# -- enrolment -----------------------------------------------------------------------------


def test_enrolment_is_pending_until_confirmed_and_never_answers_a_code(
    http: TestClient, root: Person, clock: ManualClock, chained: Central
) -> None:
    csrf = {"X-CSRF-Token": full_login(http, root, clock)["csrf_token"]}
    create_operator(chained, "ann", role="auditor", password=PASSWORD, actor="test")
    made = http.post(
        "/api/v1/chain/users/ann/factors/backup/enroll", json={"label": "Backup"}, headers=csrf
    )
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    body = made.json()
    assert body["status"] == "pending" and body["otpauth_uri"].startswith("otpauth://totp/")
    assert set(body) == {"factor_id", "label", "otpauth_uri", "status", "replaces"}
    secret = body["otpauth_uri"].split("secret=")[1].split("&")[0]
    listed = http.get("/api/v1/chain/users/ann/factors").json()
    assert [(f["factor_id"], f["active"], f["pending"]) for f in listed] == [
        ("backup", False, True)
    ]
    assert secret not in str(listed)
    wrong = http.post(
        "/api/v1/chain/users/ann/factors/backup/confirm", json={"code": "000000"}, headers=csrf
    )
    assert wrong.status_code == 422
    right = http.post(
        "/api/v1/chain/users/ann/factors/backup/confirm",
        json={"code": code_at(secret, clock())},
        headers=csrf,
    )
    assert right.status_code == 200 and right.json()["active"] is True
    audit = http.get("/api/v1/events", params={"kind": "factor_enrolled"}).json()["items"]
    assert audit and secret not in str(audit)


def test_replacing_a_confirmed_factor_needs_reauthentication(
    http: TestClient, root: Person, clock: ManualClock
) -> None:
    csrf = {"X-CSRF-Token": full_login(http, root, clock)["csrf_token"]}
    path = "/api/v1/chain/users/root/factors/second/enroll"
    bare = http.post(path, json={}, headers=csrf)
    assert (bare.status_code, bare.json()["code"]) == (403, "reauthentication_required")
    wrong = {"password": "not it", "code": code_at(root.secrets["totp"], clock())}
    assert http.post(path, json=wrong, headers=csrf).json()["code"] == "reauthentication_failed"
    clock.advance(30)
    right = {"password": PASSWORD, "code": code_at(root.secrets["totp"], clock())}
    replaced = http.post(path, json=right, headers=csrf)
    assert replaced.status_code == 201 and replaced.json()["replaces"] is True
    clock.advance(30)
    http.cookies.clear()
    full_login(http, root, clock)  # the confirmed factor works until the new one is confirmed


def test_only_the_operator_or_an_admin_enrols_and_tokens_enrol_nothing(
    chained: Central, clock: ManualClock, tokens_for_chained: dict[str, str]
) -> None:
    ann = make_operator(chained, clock, "ann", "auditor", ())
    make_operator(chained, clock, "bob", "auditor", ())
    clock.advance(30)
    with client_for(chained) as http:
        answer = http.post(
            "/api/v1/login",
            json={
                "operator_id": "ann",
                "password": PASSWORD,
                "code": code_at(ann.secrets["totp"], clock()),
            },
        )
        csrf = {"X-CSRF-Token": answer.json()["csrf_token"]}
        other = http.post("/api/v1/chain/users/bob/factors/x/enroll", json={}, headers=csrf)
        assert other.status_code == 403
        own = http.post("/api/v1/chain/users/ann/factors/x/enroll", json={}, headers=csrf)
        assert own.status_code == 201
        http.cookies.clear()
        bearer = {"Authorization": f"Bearer {tokens_for_chained['admin']}"}
        by_token = http.post("/api/v1/chain/users/ann/factors/y/enroll", json={}, headers=bearer)
        assert (by_token.status_code, by_token.json()["code"]) == (403, "operators_only")


@pytest.fixture
def tokens_for_chained(chained: Central) -> dict[str, str]:
    from shimmfa.central import access

    _, token = access.create_token(chained, "admin-token", "admin", actor="test")
    return {"admin": token}


# -- the command line ---------------------------------------------------------------------


def test_the_cli_enrols_and_confirms_a_factor_and_a_wrong_code_leaves_it_pending(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = CentralSettings(database_url=sqlite_url)
    central = Central(settings)
    try:
        create_operator(central, "carl", role="infosec", password=PASSWORD, actor="test")
    finally:
        central.close()
    secret_file = tmp_path / "carl.backup"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own script
            [str(SHIMMFA), "central", "factor", *args, "--database-url", sqlite_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    wrong = cli("enrol", "carl", "backup", "--secret-file", str(secret_file), "--code", "000000")
    assert wrong.returncode != 0 and "stays pending" in wrong.stderr
    listed = cli("list", "carl")
    assert "backup" in listed.stdout and "no" in listed.stdout  # not confirmed
    secret = secret_file.read_text().strip()
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    right = cli(
        "enrol", "carl", "backup", "--secret-file", str(secret_file), "--code",
        code_at(secret, time.time()),
    )  # fmt: skip
    assert right.returncode == 0, right.stderr
    assert secret not in right.stdout + right.stderr
    assert "confirmed" in right.stdout
