"""POST /api/v1/events: the shim's https sender's batches. All or nothing,
idempotent by event_id, heartbeats inside verified; GET /api/v1/events
filters and pages."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.kit import SimShim
from central.test_ingest import snapshot
from shimmfa.central.context import Central

URL = "/api/v1/events"


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


def test_a_batch_sent_twice_is_stored_once(
    client: TestClient, central: Central, shim: SimShim, admin: dict[str, str]
) -> None:
    body = batch(
        shim.heartbeat_event(),
        shim.event("auth_failure", technician_id="t1", result="BAD_CODE", detail="x"),
        shim.heartbeat_event(),
    )
    first = client.post(URL, json=body, headers=shim.auth)
    assert first.json() == {"accepted": 3, "new": 3, "stale": 0}
    again = client.post(URL, json=body, headers=shim.auth)
    assert again.json() == {"accepted": 3, "new": 0, "stale": 0}
    stored = client.get(URL, params={"source": "shim"}, headers=admin).json()["items"]
    assert [e["kind"] for e in stored] == ["heartbeat", "auth_failure", "heartbeat"]
    state = snapshot(central, "shim-a")
    assert (state["seq"], state["heartbeats"]) == (2, 2)
    assert stored[0]["heartbeat"] == body["events"][0]["heartbeat"]


def test_a_stale_heartbeat_is_stored_and_counted_not_refused(
    client: TestClient, central: Central, shim: SimShim
) -> None:
    old = shim.heartbeat_event()
    newer = shim.heartbeat_event()
    assert client.post(URL, json=batch(newer), headers=shim.auth).json()["stale"] == 0
    answer = client.post(URL, json=batch(old), headers=shim.auth)
    assert answer.json() == {"accepted": 1, "new": 1, "stale": 1}
    assert snapshot(central, "shim-a")["seq"] == 2


def test_a_bad_heartbeat_signature_refuses_the_whole_batch(
    client: TestClient, central: Central, shim: SimShim
) -> None:
    good = shim.heartbeat_event()
    bad = SimShim("shim-a").heartbeat_event()  # another key
    before = snapshot(central, "shim-a")
    answer = client.post(URL, json=batch(good, bad), headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (403, "bad_signature")
    assert snapshot(central, "shim-a") == before


def test_another_shims_event_refuses_the_whole_batch(
    client: TestClient, central: Central, shim: SimShim
) -> None:
    mine = shim.event("config_loaded", config_sha256="ab" * 32)
    theirs = SimShim("shim-b").event("config_loaded", config_sha256="ab" * 32)
    before = snapshot(central, "shim-a")
    answer = client.post(URL, json=batch(mine, theirs), headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (403, "wrong_shim")
    assert snapshot(central, "shim-a") == before


@pytest.mark.parametrize(
    "body",
    [
        {"events": [{"kind": "nonsense"}]},
        {"events": "x"},
        {"evnts": []},
        [],
        {"events": [None]},
    ],
)
def test_malformed_batches_are_422_and_store_nothing(
    client: TestClient, central: Central, shim: SimShim, body: Any
) -> None:
    before = snapshot(central, "shim-a")
    answer = client.post(URL, json=body, headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (422, "malformed")
    assert snapshot(central, "shim-a") == before


def test_a_tamper_event_marks_the_shim_tampered_with_one_alarm(
    client: TestClient, shim: SimShim, admin: dict[str, str]
) -> None:
    client.post("/api/v1/heartbeats", json=shim.heartbeat(), headers=shim.auth)
    for _ in range(2):
        body = batch(shim.event("tamper", event="case_opened", source="gpio"))
        assert client.post(URL, json=body, headers=shim.auth).status_code == 200
    assert client.get("/api/v1/shims/shim-a", headers=admin).json()["status"] == "tampered"
    alarms = client.get(URL, params={"kind": "tampered"}, headers=admin).json()["items"]
    assert len(alarms) == 1
    # the latch reset on the shim (audited there) clears it
    body = batch(shim.event("latch_reset", authorised_by="op"))
    client.post(URL, json=body, headers=shim.auth)
    assert client.get("/api/v1/shims/shim-a", headers=admin).json()["status"] == "ok"


def test_shim_stopping_marks_it_stopped_until_it_is_heard_again(
    client: TestClient, shim: SimShim, admin: dict[str, str]
) -> None:
    client.post(URL, json=batch(shim.heartbeat_event()), headers=shim.auth)
    client.post(URL, json=batch(shim.event("shim_stopping")), headers=shim.auth)
    assert client.get("/api/v1/shims/shim-a", headers=admin).json()["status"] == "stopped"
    shim.reboot()
    client.post(URL, json=batch(shim.heartbeat_event()), headers=shim.auth)
    assert client.get("/api/v1/shims/shim-a", headers=admin).json()["status"] == "ok"


def test_events_filter_and_page(client: TestClient, shim: SimShim, admin: dict[str, str]) -> None:
    now = time.time()
    events = [
        shim.event("auth_failure", at=now + i, technician_id=f"t{i}", result="BAD_CODE", detail="")
        for i in range(5)
    ] + [shim.event("tamper", at=now + 10, event="x")]
    client.post(URL, json=batch(*events), headers=shim.auth)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"shim_id": "shim-a", "kind": "auth_failure", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get(URL, params=params, headers=admin).json()
        seen += [e["fields"]["technician_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["t0", "t1", "t2", "t3", "t4"]
    severe = client.get(URL, params={"severity": 1, "source": "shim"}, headers=admin).json()
    assert [e["kind"] for e in severe["items"]] == ["tamper"]
    window = client.get(
        URL,
        params={"since": now + 0.5, "until": now + 2.5, "kind": "auth_failure"},
        headers=admin,
    ).json()
    assert [e["fields"]["technician_id"] for e in window["items"]] == ["t1", "t2"]
