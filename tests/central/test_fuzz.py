"""Property tests of the ingest bodies (any bytes, any JSON, mutated real
heartbeats and batches: never a 5xx, and the shim moves only on a 200),
schemathesis over /openapi.json (bounded: no 5xx), and `alembic check`
(the models and the migrations agree) on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.kit import SimShim
from central.test_ingest import snapshot
from shimmfa.central import schema
from shimmfa.central.context import Central

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
FIELDS = ["shim_id", "hardware_id", "seq", "boot_count", "uptime_s", "sent_at", "state", "sig"]
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@FUZZ
@given(body=st.binary(max_size=300))
def test_any_bytes_never_5xx(client: TestClient, shim: SimShim, body: bytes) -> None:
    for url in ("/api/v1/heartbeats", "/api/v1/events"):
        answer = client.post(url, content=body, headers=shim.auth)
        assert answer.status_code < 500, answer.text
        assert set(answer.json()) >= {"code", "message"} or answer.status_code == 200


@FUZZ
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_a_mutated_heartbeat_never_5xx_and_moves_only_on_200(
    client: TestClient, central: Central, shim: SimShim, field: str, value: Any
) -> None:
    wire = shim.heartbeat()
    if field == "sig":
        wire["sig"] = value
    else:
        wire["payload"][field] = value
    before = snapshot(central, "shim-a")
    answer = client.post("/api/v1/heartbeats", json=wire, headers=shim.auth)
    assert answer.status_code in (200, 403, 409, 422), answer.text
    if answer.status_code != 200:
        assert snapshot(central, "shim-a") == before


@FUZZ
@given(
    key=st.sampled_from(["event_id", "kind", "at", "shim_id", "severity", "fields", "security"]),
    value=json_values,
)
def test_a_mutated_event_batch_never_5xx(
    client: TestClient, shim: SimShim, key: str, value: Any
) -> None:
    event = shim.heartbeat_event()
    event[key] = value
    answer = client.post("/api/v1/events", json={"events": [event]}, headers=shim.auth)
    assert answer.status_code in (200, 403, 422), answer.text


def test_unknown_routes_wrong_methods_and_crashes_answer_json(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert client.get("/nowhere").json()["code"] == "not_found"
    assert client.put("/api/v1/heartbeats").json()["code"] == "method_not_allowed"
    assert client.get("/api/v1/shims?limit=0", headers=admin).json()["code"] == "validation_error"
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "shimmfa central"


def test_alembic_check_finds_the_models_and_migrations_in_agreement(central: Central) -> None:
    schema.check_models(central.engine)
    assert schema.current_revision(central.engine) == schema.head_revision()


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" * 5000])
def test_numbers_json_cannot_hold_never_5xx(
    client: TestClient, shim: SimShim, number: bytes
) -> None:
    wire = b'{"payload": {"seq": %s}, "sig": "x"}' % number
    assert client.post("/api/v1/heartbeats", content=wire, headers=shim.auth).status_code == 422
    batch = b'{"events": [{"at": %s}]}' % number
    assert client.post("/api/v1/events", content=batch, headers=shim.auth).status_code == 422


def test_schemathesis_finds_no_server_error(
    client: TestClient, admin: dict[str, str], shim: SimShim
) -> None:
    import schemathesis

    api = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    calls = 0

    def exercise(op: Any, headers: dict[str, str]) -> None:
        @settings(
            max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            nonlocal calls
            case.headers = {**(case.headers or {}), **headers}
            response = case.call()
            calls += 1
            if response.status_code >= 500:
                failures.append(f"{op.method} {op.path}: {response.status_code}")

        check()

    for operation in api.get_all_operations():
        op = operation.ok()
        shim_path = op.path in ("/api/v1/heartbeats", "/api/v1/events")
        exercise(op, shim.auth if shim_path else admin)
    assert failures == []
    assert calls >= 20  # every operation was called
