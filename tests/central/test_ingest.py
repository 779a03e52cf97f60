"""POST /api/v1/heartbeats: accepted ones move the shim; forged, altered,
replayed, other-shim, unknown-key and malformed ones are refused with
their codes and change nothing; a boot count that went backwards enters
state_reset once; two heartbeats racing cannot both move a shim."""

from __future__ import annotations

import base64
import copy
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.kit import SimShim
from shimmfa.central.context import Central
from shimmfa.central.models import EventRow, HeartbeatRow, ShimRow

URL = "/api/v1/heartbeats"


def snapshot(central: Central, shim_id: str) -> dict[str, Any]:
    with central.sessions() as session:
        row = session.scalars(select(ShimRow).where(ShimRow.shim_id == shim_id)).one()
        state = {c.name: getattr(row, c.name) for c in ShimRow.__table__.columns}
        state["heartbeats"] = session.scalar(select(func.count()).select_from(HeartbeatRow))
        state["events"] = session.scalar(select(func.count()).select_from(EventRow))
        return state


def test_an_accepted_heartbeat_moves_the_shim(
    client: TestClient, central: Central, shim: SimShim
) -> None:
    answer = client.post(URL, json=shim.heartbeat(), headers=shim.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": True, "shim_id": "shim-a", "boot_count": 1, "seq": 1}
    state = snapshot(central, "shim-a")
    assert (state["boot_count"], state["seq"]) == (1, 1)
    assert state["heartbeats"] == 1
    assert state["last_seen_at"] == central.clock()


def forged(shim: SimShim) -> dict[str, Any]:
    other = SimShim(shim.shim_id)  # same ID, another key
    return other.heartbeat(seq=100)


def altered(shim: SimShim) -> dict[str, Any]:
    wire = shim.heartbeat(seq=100)
    wire["payload"]["seq"] = 101
    return wire


def altered_signature(shim: SimShim) -> dict[str, Any]:
    wire = shim.heartbeat(seq=100)
    raw = bytearray(base64.b64decode(wire["sig"]))
    raw[0] ^= 1
    wire["sig"] = base64.b64encode(bytes(raw)).decode()
    return wire


def other_shim(shim: SimShim) -> dict[str, Any]:
    return shim.heartbeat(seq=100, shim_id="shim-b")


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (forged, 403, "bad_signature"),
        (altered, 403, "bad_signature"),
        (altered_signature, 403, "bad_signature"),
        (other_shim, 403, "wrong_shim"),
    ],
)
def test_forged_altered_and_other_shim_heartbeats_change_nothing(
    client: TestClient, central: Central, shim: SimShim, make: Any, status: int, code: str
) -> None:
    assert client.post(URL, json=shim.heartbeat(), headers=shim.auth).status_code == 200
    before = snapshot(central, "shim-a")
    answer = client.post(URL, json=make(shim), headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert snapshot(central, "shim-a") == before


def test_a_replayed_or_older_heartbeat_is_not_newer(
    client: TestClient, central: Central, shim: SimShim
) -> None:
    first, second = shim.heartbeat(), shim.heartbeat()
    assert client.post(URL, json=first, headers=shim.auth).status_code == 200
    assert client.post(URL, json=second, headers=shim.auth).status_code == 200
    before = snapshot(central, "shim-a")
    for wire in (second, first):
        answer = client.post(URL, json=wire, headers=shim.auth)
        assert (answer.status_code, answer.json()["code"]) == (409, "not_newer")
    assert snapshot(central, "shim-a") == before


@pytest.mark.parametrize("credential", [None, "Bearer sms_unknown", "Basic abc", "Bearer "])
def test_no_or_an_unknown_credential_is_401(
    client: TestClient, central: Central, shim: SimShim, credential: str | None
) -> None:
    before = snapshot(central, "shim-a")
    headers = {} if credential is None else {"Authorization": credential}
    answer = client.post(URL, json=shim.heartbeat(), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert snapshot(central, "shim-a") == before


def test_the_heartbeat_fast_path_answers_as_the_api_does(
    client: TestClient, central: Central, shim: SimShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /api/v1/heartbeats is served before FastAPI's routing; what it
    does not serve (another method, a query string) gets the API's own
    answers, and an internal error is the API's JSON 500."""
    answer = client.get(URL, headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (405, "method_not_allowed")
    routed = client.post(URL, params={"via": "route"}, json=shim.heartbeat(), headers=shim.auth)
    fast = client.post(URL, json=shim.heartbeat(), headers=shim.auth)
    assert (routed.status_code, fast.status_code) == (200, 200)
    assert routed.json() | {"seq": 0} == fast.json() | {"seq": 0}
    assert client.post(URL + "?x=%00", json=shim.heartbeat(), headers=shim.auth).status_code == 400
    refused = client.post(URL, json=shim.heartbeat())
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == "application/json"

    async def broken(*_: object) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr("shimmfa.central.api.ingest._read", broken)
    before = snapshot(central, "shim-a")
    answer = client.post(URL, json=shim.heartbeat(), headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (500, "internal_error")
    assert "a bug" not in answer.text
    assert snapshot(central, "shim-a") == before


def test_an_operator_token_is_not_a_shim_credential(
    client: TestClient, shim: SimShim, admin: dict[str, str]
) -> None:
    assert client.post(URL, json=shim.heartbeat(), headers=admin).status_code == 401


def test_an_unregistered_key_cannot_pass_as_a_registered_shim(
    client: TestClient, central: Central, shim: SimShim, admin: dict[str, str]
) -> None:
    """A second shim's credential cannot carry the first shim's payload, and
    its own heartbeats verify only with its own key."""
    intruder = SimShim("shim-b")
    answer = client.post("/api/v1/shims", json=intruder.registration(), headers=admin)
    intruder.credential = answer.json()["credential"]
    before = snapshot(central, "shim-a")
    posed = intruder.heartbeat(shim_id="shim-a")
    assert client.post(URL, json=posed, headers=intruder.auth).json()["code"] == "wrong_shim"
    unknown_key = SimShim("shim-b").heartbeat()
    answer = client.post(URL, json=unknown_key, headers=intruder.auth)
    assert answer.json()["code"] == "bad_signature"
    assert snapshot(central, "shim-a") == before


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"payload": {}, "sig": ""}', b"\xff\xfe", b"null", b"1" * 20000],
)
def test_malformed_bodies_are_422_or_413(
    client: TestClient, central: Central, shim: SimShim, body: bytes
) -> None:
    before = snapshot(central, "shim-a")
    answer = client.post(URL, content=body, headers=shim.auth)
    assert answer.status_code in (413, 422)
    assert answer.json()["code"] in ("malformed", "too_large")
    assert snapshot(central, "shim-a") == before


def test_a_boot_count_that_went_back_raises_one_state_reset(
    client: TestClient, central: Central, shim: SimShim, admin: dict[str, str]
) -> None:
    shim.boot_count = 5
    assert client.post(URL, json=shim.heartbeat(), headers=shim.auth).status_code == 200
    shim.boot_count, shim.seq = 1, 0  # its state DB was replaced
    for _ in range(3):
        answer = client.post(URL, json=shim.heartbeat(), headers=shim.auth)
        assert (answer.status_code, answer.json()["code"]) == (409, "state_reset")
    alarms = client.get("/api/v1/events", params={"kind": "state_reset"}, headers=admin).json()
    assert len(alarms["items"]) == 1
    assert alarms["items"][0]["fields"]["boot_count"] == 1
    view = client.get("/api/v1/shims/shim-a", headers=admin).json()
    assert view["status"] == "state_reset"
    assert (view["boot_count"], view["seq"]) == (5, 1)
    assert view["state_reset"]["boot_count"] == 1
    # a newer heartbeat of the old boot count does not sneak past it either
    stale = shim.heartbeat(boot_count=6, seq=1)
    assert client.post(URL, json=stale, headers=shim.auth).json()["code"] == "state_reset"


def test_accept_reset_takes_the_new_position_and_is_audited(
    client: TestClient, central: Central, shim: SimShim, tokens: dict[str, str]
) -> None:
    shim.boot_count = 5
    client.post(URL, json=shim.heartbeat(), headers=shim.auth)
    shim.boot_count, shim.seq = 1, 0
    client.post(URL, json=shim.heartbeat(), headers=shim.auth)
    path = "/api/v1/shims/shim-a/accept-reset"
    infosec = {"Authorization": f"Bearer {tokens['infosec']}"}
    assert client.post(path, headers=infosec).status_code == 403
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    answer = client.post(path, headers=admin)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["boot_count"], answer.json()["seq"]) == (1, 1)
    assert answer.json()["state_reset"] is None
    assert client.post(URL, json=shim.heartbeat(), headers=shim.auth).status_code == 200
    audit = client.get("/api/v1/events", params={"kind": "reset_accepted"}, headers=admin)
    assert audit.json()["items"][0]["fields"]["by"] == "token:admin-token"
    assert client.post(path, headers=admin).json()["code"] == "not_reset"


def test_concurrent_heartbeats_of_one_shim_move_it_once(
    client: TestClient, central: Central, shim: SimShim
) -> None:
    """The same heartbeat posted from 8 threads at once: one 200, the rest
    409, one history row."""
    wire = shim.heartbeat()
    results: list[int] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        results.append(client.post(URL, json=copy.deepcopy(wire), headers=shim.auth).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [409] * 7
    assert snapshot(central, "shim-a")["heartbeats"] == 1


def test_a_removed_shims_credential_stops_working(
    client: TestClient, shim: SimShim, admin: dict[str, str]
) -> None:
    assert client.post(URL, json=shim.heartbeat(), headers=shim.auth).status_code == 200
    assert client.delete("/api/v1/shims/shim-a", headers=admin).status_code == 204
    assert client.post(URL, json=shim.heartbeat(), headers=shim.auth).status_code == 401
