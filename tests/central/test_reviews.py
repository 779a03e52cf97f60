"""Reviews of break-glass sessions, on SQLite and PostgreSQL, on a manual
clock: the shim's `breakglass_session` events (one per audience) and its
`session_start` with `break_glass: true` open one review per session, in
any order and however often; clinical engineering and infosec each sign it
off once, never the same person for both; a review still open 24 hours on
raises one `breakglass_review_overdue` alarm, forwarded to the SIEM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.kit import ManualClock, SimShim, code_at
from shimmfa.central import access
from shimmfa.central.context import Central
from shimmfa.central.event_ingest import ingest_events
from shimmfa.central.ingest import authenticate_shim
from shimmfa.central.monitor import Monitor
from shimmfa.central.operators import create_operator
from shimmfa.central.registry import register_shim
from shimmfa.central.settings import CentralSettings
from shimmfa.central.siem import Forwarder
from waiting import wait_for

DAY = 24 * 3600.0
SESSION = "20261123T105459.123Z-3f9a1c2b5d7e"


def breakglass_events(shim: SimShim, session_id: str = SESSION) -> list[dict[str, Any]]:
    """What the shim sends when a break-glass session opens."""
    return [
        shim.event("session_start", session_id=session_id, technician_id="breakglass",
                   break_glass=True),
        shim.event("breakglass_session", session_id=session_id, audience="clinical_engineering"),
        shim.event("breakglass_session", session_id=session_id, audience="infosec"),
    ]  # fmt: skip


def send(client: TestClient, shim: SimShim, events: list[dict[str, Any]]) -> None:
    answer = client.post("/api/v1/events", json={"events": events}, headers=shim.auth)
    assert answer.status_code == 200, answer.text


def reviews(client: TestClient, admin: dict[str, str], **params: str) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/breakglass/reviews", params=params, headers=admin)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["reviews"]
    return found


def central_events(client: TestClient, admin: dict[str, str], kind: str) -> list[dict[str, Any]]:
    params = {"source": "central", "kind": kind, "limit": 1000}
    items: list[dict[str, Any]] = client.get("/api/v1/events", params=params, headers=admin).json()[
        "items"
    ]
    return items


@pytest.fixture
def people(central: Central) -> dict[str, dict[str, str]]:
    made = {}
    for name, role in (("cleo", "clinical_engineering"), ("carl", "clinical_engineering"),
                       ("iris", "infosec"), ("audrey", "auditor")):  # fmt: skip
        _, token = access.create_token(central, name, role, actor="test")
        made[name] = {"Authorization": f"Bearer {token}"}
    return made


def sign(client: TestClient, review: int, who: dict[str, str], comment: str = "ok") -> Any:
    return client.post(
        f"/api/v1/breakglass/reviews/{review}/signoffs", json={"comment": comment}, headers=who
    )


def test_the_shims_events_open_one_review_per_session_however_often(
    client: TestClient, shim: SimShim, admin: dict[str, str]
) -> None:
    events = breakglass_events(shim)
    send(client, shim, events[1:2])  # the clinical notification first
    send(client, shim, events)  # all of them, the first again
    send(client, shim, breakglass_events(shim))  # new event IDs, the same session
    send(client, shim, [shim.event("session_start", session_id="plain", technician_id="t")])
    found = reviews(client, admin)
    assert [(r["shim_id"], r["session_id"], r["state"]) for r in found] == [
        ("shim-a", SESSION, "open")
    ]
    assert all(found[0]["notified"].values())
    assert found[0]["signoffs"] == {"clinical_engineering": None, "infosec": None}
    opened = central_events(client, admin, "breakglass_review_opened")
    assert len(opened) == 1 and opened[0]["fields"]["opened_by"] == "breakglass_session"
    alerts = client.get("/api/v1/events", params={"kind": "breakglass_session"},
                        headers=admin).json()["items"]  # fmt: skip
    assert {(e["severity"], e["fields"]["audience"]) for e in alerts} == {
        (1, "clinical_engineering"), (1, "infosec")
    }  # fmt: skip


def test_a_breakglass_event_without_its_fields_is_refused(
    client: TestClient, shim: SimShim, admin: dict[str, str]
) -> None:
    bad = shim.event("session_end", session_id=SESSION)
    bad["kind"] = "breakglass_session"
    answer = client.post("/api/v1/events", json={"events": [bad]}, headers=shim.auth)
    assert answer.status_code == 422
    assert reviews(client, admin) == []


def test_both_departments_sign_off_once_each_and_the_review_closes(
    client: TestClient, shim: SimShim, admin: dict[str, str], people: dict[str, Any]
) -> None:
    send(client, shim, breakglass_events(shim))
    review = reviews(client, admin)[0]["id"]
    for who in (people["audrey"], admin):
        assert sign(client, review, who).status_code == 403
    missing = sign(client, review, people["cleo"], comment="   ")
    assert (missing.status_code, missing.json()["code"]) == (422, "comment")
    assert sign(client, review, people["cleo"], "pump 7 serviced, logs read").status_code == 201
    again = sign(client, review, people["carl"])
    assert (again.status_code, again.json()["code"]) == (409, "already_signed")
    assert reviews(client, admin, state="open")[0]["id"] == review
    done = sign(client, review, people["iris"], "recording reviewed")
    assert done.status_code == 201
    body = done.json()
    assert body["state"] == "closed"
    assert body["signoffs"]["clinical_engineering"]["by"] == "token:cleo"
    assert body["signoffs"]["infosec"]["comment"] == "recording reviewed"
    late = sign(client, review, people["iris"])
    assert (late.status_code, late.json()["code"]) == (409, "closed")
    assert reviews(client, admin, state="open") == []
    assert reviews(client, admin, state="closed")[0]["id"] == review
    signed = central_events(client, admin, "breakglass_review_signed")
    assert [e["fields"]["role"] for e in signed] == ["clinical_engineering", "infosec"]
    closed = central_events(client, admin, "breakglass_review_closed")
    assert len(closed) == 1 and closed[0]["fields"]["was_overdue"] is False


def test_the_same_person_cannot_sign_for_both_departments(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim,
    admin: dict[str, str], people: dict[str, Any],
) -> None:  # fmt: skip
    """Sam signs for clinical engineering with a token; his operator login
    (infosec since) cannot sign for infosec."""
    _, token = access.create_token(central, "sam", "clinical_engineering", actor="test")
    _, secret = create_operator(central, "SAM", role="infosec", password="s" * 12, actor="t")
    send(client, shim, breakglass_events(shim))
    review = reviews(client, admin)[0]["id"]
    assert sign(client, review, {"Authorization": f"Bearer {token}"}).status_code == 201
    login = client.post("/api/v1/login", json={"operator_id": "SAM", "password": "s" * 12,
                                               "code": code_at(secret, clock.now)})  # fmt: skip
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    refused = sign(client, review, csrf)
    assert (refused.status_code, refused.json()["code"]) == (403, "same_person")
    assert reviews(client, admin)[0]["signoffs"]["infosec"] is None
    assert sign(client, review, people["iris"]).status_code == 201


def test_a_review_open_24_hours_raises_one_alarm(
    client: TestClient, central: Central, clock: ManualClock, shim: SimShim,
    admin: dict[str, str], people: dict[str, Any],
) -> None:  # fmt: skip
    monitor = Monitor(central)
    send(client, shim, breakglass_events(shim))
    send(client, shim, breakglass_events(shim, "closed-in-time"))
    early = next(r["id"] for r in reviews(client, admin) if r["session_id"] == "closed-in-time")
    sign(client, early, people["cleo"])
    sign(client, early, people["iris"])
    clock.advance(DAY - 0.01)
    monitor.run_once()
    assert central_events(client, admin, "breakglass_review_overdue") == []
    assert reviews(client, admin, state="overdue") == []
    clock.advance(0.01)
    assert monitor.run_once().alarms == 1
    assert monitor.run_once().alarms == 0
    clock.advance(DAY)
    assert monitor.run_once().alarms == 0
    overdue = central_events(client, admin, "breakglass_review_overdue")
    assert len(overdue) == 1
    assert overdue[0]["severity"] == 1 and overdue[0]["shim_id"] == "shim-a"
    assert overdue[0]["fields"]["session_id"] == SESSION
    assert overdue[0]["fields"]["hours_open"] == pytest.approx(24.0)
    late = reviews(client, admin, state="overdue")
    assert [r["session_id"] for r in late] == [SESSION] and late[0]["overdue_alarm_at"]
    sign(client, late[0]["id"], people["carl"])
    sign(client, late[0]["id"], people["iris"])
    closed = central_events(client, admin, "breakglass_review_closed")
    assert [e["fields"]["was_overdue"] for e in closed] == [False, True]


def test_the_overdue_alarm_is_forwarded_to_the_siem(
    database_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    siem = tmp_path / "siem.jsonl"
    settings = CentralSettings(
        database_url=database_url, siem_transport="file", siem_path=str(siem)
    )
    central = Central(settings, clock=clock)
    sim = SimShim("shim-f")
    _, credential = register_shim(central, **sim.registration(), actor="test")
    identity = authenticate_shim(central, credential)
    ingest_events(central, identity, {"events": breakglass_events(sim)})
    clock.advance(DAY)
    assert Monitor(central).run_once().alarms == 1
    forwarder = Forwarder(central, idle_poll=0.05)
    forwarder.start()

    def forwarded() -> list[dict[str, Any]]:
        lines = siem.read_text().splitlines() if siem.exists() else []
        return [e for e in map(json.loads, lines) if e["kind"] == "breakglass_review_overdue"]

    try:
        alarm = wait_for(forwarded, "the overdue alarm at the SIEM")
        assert alarm[0]["shim_id"] == "shim-f" and alarm[0]["fields"]["session_id"] == SESSION
    finally:
        forwarder.stop()
        central.close()
