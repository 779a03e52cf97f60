"""The oracle's HTTP layer in-process (the app factory in a TestClient, a
manual clock): farMFA's paths, bodies and field names, every refusal as a
typed `{code, message}` 4xx, and no body at all that makes it answer 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorum.kit import ManualClock, one_group
from shimmfa.quorum.age_tocs import seal_toc
from shimmfa.quorum.api import create_app
from shimmfa.quorum.approvers import Approver
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.store_memory import MemoryGroupRegistry, MemorySessionStore

SESSION_FIELDS = [
    "id", "toc_group_id", "expires_at", "created_at", "ttl", "complete",
    "tocs_in_group", "tocs_threshold", "tocs_provided",
]  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> MemorySessionStore:
    return MemorySessionStore()


@pytest.fixture
def client(clock: ManualClock, store: MemorySessionStore) -> Iterator[TestClient]:
    def approver(request: Request) -> str | None:
        name = request.headers.get("x-operator")
        if name == "nobody":
            raise HTTPException(401, "log in first")
        return name

    oracle = Oracle(store, MemoryGroupRegistry(), clock=clock)
    app = create_app(oracle, approver=approver, max_body_bytes=20_000)
    with TestClient(app, raise_server_exceptions=False) as made:
        yield made


def opened(client: TestClient, ttl: int = 60) -> tuple[list[Any], dict[str, Any]]:
    tocs = one_group(3, 2)
    answer = client.post("/sessions", json={"toc_zero": tocs[0].as_dict(), "ttl": ttl})
    assert answer.status_code == 200, answer.text
    return tocs, answer.json()


def problem(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"code", "message"} and body["code"] == code
    assert answer.headers["content-type"] == "application/json"
    return str(body["message"])


def test_farmfas_flow_with_its_field_names(client: TestClient) -> None:
    tocs, credentials = opened(client)
    assert list(credentials) == [*SESSION_FIELDS, "tek", "kek"]
    sid = credentials["id"]
    assert len(sid) == 16 and credentials["tocs_provided"] == 1
    assert credentials["expires_at"].endswith("Z") and credentials["created_at"].endswith("Z")
    sent = client.post(
        f"/sessions/{sid}/tocs", json={"encrypted_toc": seal_toc(tocs[1], credentials["tek"])}
    )
    assert (sent.status_code, sent.content) == (200, b"")  # as farMFA: no body
    session = client.get(f"/sessions/{sid}").json()
    assert list(session) == SESSION_FIELDS and session["complete"] is True
    code = client.post(f"/sessions/{sid}/totp", json={"kek": credentials["kek"]}).json()
    assert list(code) == ["totp", "totp_expires_at", "session_expires_at"]
    assert code["totp"].isdigit() and len(code["totp"]) == 6


def test_every_refusal_is_typed(client: TestClient, clock: ManualClock) -> None:
    tocs, credentials = opened(client)
    sid, tek, kek = credentials["id"], credentials["tek"], credentials["kek"]
    totp = f"/sessions/{sid}/totp"
    problem(client.post(totp, json={"kek": kek}), 409, "below_threshold")
    problem(client.post(totp, json={"kek": "AAAA"}), 400, "bad_kek")
    sealed = seal_toc(one_group()[1], tek)
    client.post(f"/sessions/{sid}/tocs", json={"encrypted_toc": sealed})
    problem(client.post(totp, json={"kek": kek}), 422, "wrong_group")
    again = seal_toc(tocs[0], tek)
    client.post(f"/sessions/{sid}/tocs", json={"encrypted_toc": again})
    problem(client.post(f"/sessions/{sid}/tocs", json={"encrypted_toc": again}), 409, "duplicate")
    problem(client.post(totp, json={"kek": kek}), 409, "duplicate")
    client.post(f"/sessions/{sid}/tocs", json={"encrypted_toc": seal_toc(tocs[2], tek)})
    assert client.post(totp, json={"kek": kek}).status_code == 200
    problem(client.post(totp, json={"kek": kek}), 410, "released")
    problem(client.get("/sessions/AAAAAAAAAAAAAAAA"), 404, "not_found")
    problem(client.post("/sessions/x/totp", json={"kek": kek}), 404, "not_found")


def test_an_expired_session_answers_410(client: TestClient, clock: ManualClock) -> None:
    tocs, credentials = opened(client, ttl=60)
    sid = credentials["id"]
    clock.advance(60)
    problem(client.get(f"/sessions/{sid}"), 410, "expired")
    body = {"encrypted_toc": seal_toc(tocs[1], credentials["tek"])}
    problem(client.post(f"/sessions/{sid}/tocs", json=body), 410, "expired")
    problem(client.post(f"/sessions/{sid}/totp", json={"kek": credentials["kek"]}), 410, "expired")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sessions", None),
        ("/sessions", []),
        ("/sessions", {}),
        ("/sessions", {"toc_zero": "x"}),
        ("/sessions", {"toc_zero": {}}),
        ("/sessions", {"toc_zero": {"group_id": 1}, "ttl": 60}),
        ("/sessions", {"toc_zero": None, "ttl": 59}),
        ("/sessions/AAAAAAAAAAAAAAAA/tocs", {}),
        ("/sessions/AAAAAAAAAAAAAAAA/tocs", {"encrypted_toc": 5}),
        ("/sessions/AAAAAAAAAAAAAAAA/totp", {"kek": ["x"]}),
    ],
)
def test_malformed_bodies_are_422(client: TestClient, path: str, body: object) -> None:
    problem(client.post(path, json=body), 422, "malformed")


def test_the_ttl_bounds_and_types_are_enforced(client: TestClient) -> None:
    toc = one_group()[0].as_dict()
    for ttl in (59, 86401, "60", 60.5, True, None):
        problem(client.post("/sessions", json={"toc_zero": toc, "ttl": ttl}), 422, "malformed")
    for ttl in (60, 86400):
        assert client.post("/sessions", json={"toc_zero": toc, "ttl": ttl}).json()["ttl"] == ttl
    assert client.post("/sessions", json={"toc_zero": toc}).json()["ttl"] == 60  # farMFA's default


def test_not_json_a_wrong_method_an_unknown_path_and_a_huge_body(client: TestClient) -> None:
    problem(
        client.post("/sessions", content=b"{", headers={"content-type": "application/json"}),
        422,
        "malformed",
    )  # noqa: E501
    for raw in (b'{"toc_zero": {}, "ttl": NaN}', b'{"ttl": Infinity}', b"\xff\xfe", b"[]" * 50):
        problem(client.post("/sessions", content=raw), 422, "malformed")
    problem(client.delete("/sessions"), 405, "method_not_allowed")
    problem(client.get("/nowhere"), 404, "not_found")
    problem(client.post("/sessions", content=b"x" * 20_001), 413, "too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"toc_zero": "'
        for _ in range(30):
            yield b"x" * 1000

    problem(client.post("/sessions", content=chunks()), 413, "too_large")


def test_the_approver_hook_names_who_sent_each_toc(
    client: TestClient, store: MemorySessionStore
) -> None:
    tocs = one_group(3, 2)
    answer = client.post(
        "/sessions", json={"toc_zero": tocs[0].as_dict()}, headers={"x-operator": "alice"}
    )
    sid, tek = answer.json()["id"], answer.json()["tek"]
    body = {"encrypted_toc": seal_toc(tocs[1], tek)}
    problem(
        client.post(f"/sessions/{sid}/tocs", json=body, headers={"x-operator": "nobody"}),
        401,
        "unauthorized",
    )
    client.post(f"/sessions/{sid}/tocs", json=body, headers={"x-operator": "bob"})
    state = store.read(sid)
    assert state is not None and [toc.approver for toc in state.tocs] == ["alice", "bob"]


def test_a_host_that_knows_its_approvers_gets_403_and_every_call_authenticated(
    clock: ManualClock, store: MemorySessionStore
) -> None:
    """The hook runs on reads and code requests too; an `Approver` holding
    none of the session's groups is 403 `not_permitted`, and the code goes
    to the named applicant only."""
    tocs = one_group(3, 2)

    def approver(request: Request) -> Approver:
        name = request.headers.get("x-operator", "")
        if not name:
            raise HTTPException(401, "log in first")
        held = frozenset() if name == "mallory" else frozenset({tocs[0].group_id})
        return Approver(name, held)

    app = create_app(Oracle(store, MemoryGroupRegistry(), clock=clock), approver=approver)
    with TestClient(app, raise_server_exceptions=False) as client:
        alice, bob = {"x-operator": "alice"}, {"x-operator": "bob"}
        opened = client.post("/sessions", json={"toc_zero": tocs[0].as_dict()}, headers=alice)
        sid, tek, kek = opened.json()["id"], opened.json()["tek"], opened.json()["kek"]
        problem(client.get(f"/sessions/{sid}"), 401, "unauthorized")
        body = {"encrypted_toc": seal_toc(tocs[1], tek)}
        refused = client.post(f"/sessions/{sid}/tocs", json=body, headers={"x-operator": "mallory"})
        problem(refused, 403, "not_permitted")
        assert client.get(f"/sessions/{sid}", headers=bob).json()["tocs_provided"] == 1
        assert client.post(f"/sessions/{sid}/tocs", json=body, headers=bob).status_code == 200
        problem(client.post(f"/sessions/{sid}/totp", json={"kek": kek}, headers=bob), 403,
                "not_permitted")  # fmt: skip
        code = client.post(f"/sessions/{sid}/totp", json={"kek": kek}, headers=alice)
        assert code.status_code == 200 and code.json()["totp"].isdigit()


def test_an_unexpected_error_is_still_json(clock: ManualClock) -> None:
    class Broken(MemorySessionStore):
        def read(self, session_id: str) -> None:
            raise RuntimeError("disk on fire")

    app = create_app(Oracle(Broken(), clock=clock))
    with TestClient(app, raise_server_exceptions=False) as broken:
        problem(broken.get("/sessions/AAAAAAAAAAAAAAAA"), 500, "internal_error")


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["toc_zero", "ttl", "encrypted_toc", "kek", "group_id", "share", "toc_id", "note"]
)
BODIES = st.one_of(JSON, st.dictionaries(FIELDS, JSON, max_size=6))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=BODIES, which=st.sampled_from(["open", "get", "tocs", "totp"]), raw=st.binary(max_size=60)
)
def test_no_body_makes_the_oracle_answer_5xx(
    client: TestClient, body: object, which: str, raw: bytes
) -> None:
    """Any JSON value, any bytes, at any endpoint -> a 2xx or a typed 4xx."""
    sid = "AAAAAAAAAAAAAAAA"
    path = {"open": "/sessions", "get": f"/sessions/{sid}", "tocs": f"/sessions/{sid}/tocs",
            "totp": f"/sessions/{sid}/totp"}[which]  # fmt: skip
    for answer in (client.post(path, json=body), client.post(path, content=raw)):
        assert answer.status_code < 500, answer.text
        if answer.status_code >= 400:
            assert set(answer.json()) == {"code", "message"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(toc_zero=st.dictionaries(FIELDS, JSON, max_size=6), ttl=JSON)
def test_no_toc_zero_makes_the_oracle_answer_5xx(
    client: TestClient, toc_zero: dict[str, object], ttl: object
) -> None:
    good = one_group()[0].as_dict()
    for candidate in (toc_zero, {**good, **toc_zero}):
        answer = client.post("/sessions", json={"toc_zero": candidate, "ttl": ttl})
        assert answer.status_code in (200, 422), answer.text


def test_farmfas_published_toc_opens_a_session(client: TestClient) -> None:
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "farmfa.json").read_text())
    published = vectors["tocs"][0]["json"]  # the Toc in farMFA's README
    body = f'{{"toc_zero": {published}}}'.encode()
    answer = client.post("/sessions", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    session = answer.json()
    assert (session["toc_group_id"], session["tocs_in_group"], session["tocs_threshold"]) == (
        "7GCUCI2Y",
        3,
        3,
    )
    assert (session["ttl"], session["tocs_provided"], session["complete"]) == (60, 1, False)
