"""The oracle over HTTP, as farMFA's clients see it: a real `shimmfa quorum
serve` (uvicorn) on 127.0.0.1, Tocs sealed by Debian's `age -r TEK -a`, the
code checked against Debian's `oathtool`; every refusal typed; two server
processes on one database release a code once."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quorum.conftest import needs_postgres, new_pg_database
from quorum.kit import SECRET, age_encrypt, needs_age, needs_oathtool, oathtool, one_group
from quorum.server import OracleServer, all_running
from shimmfa.core.toc import Toc
from shimmfa.quorum.age_tocs import new_identity, open_toc
from shimmfa.quorum.dealing import PlayerSpec, deal_document

pytestmark = [pytest.mark.e2e, needs_age, needs_oathtool]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Toc]]:
    """A 3-of-5 deal written by the dealer, and its Tocs opened."""
    identities = [new_identity() for _ in range(5)]
    players = [PlayerSpec(f"p{i}", None, str(key.to_public())) for i, key in enumerate(identities)]
    document = deal_document(SECRET, players, threshold=3)
    path = tmp_path_factory.mktemp("deal") / "deal.json"
    path.write_text(json.dumps(document))
    tocs = [
        open_toc(document["tocs"][p.name], [key])
        for p, key in zip(players, identities, strict=True)
    ]
    return path, tocs


@pytest.fixture(scope="module")
def oracle(
    tmp_path_factory: pytest.TempPathFactory, registered: tuple[Path, list[Toc]]
) -> Iterator[OracleServer]:
    workdir = tmp_path_factory.mktemp("oracle")
    with OracleServer(workdir, "--ephemeral", "--register", str(registered[0])).running() as s:
        yield s


def start(client: httpx.Client, toc_zero: Toc | dict[str, Any], ttl: int = 60) -> dict[str, Any]:
    body = toc_zero.as_dict() if isinstance(toc_zero, Toc) else toc_zero
    answer = client.post("/sessions", json={"toc_zero": body, "ttl": ttl})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def send(client: httpx.Client, session: dict[str, Any], toc: Toc) -> httpx.Response:
    sealed = age_encrypt(toc.to_json() + "\n", session["tek"])  # as farMFA's README does
    return client.post(f"/sessions/{session['id']}/tocs", json={"encrypted_toc": sealed})


def code_of(client: httpx.Client, session: dict[str, Any]) -> httpx.Response:
    return client.post(f"/sessions/{session['id']}/totp", json={"kek": session["kek"]})


def refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and answer.json()["message"]


def test_farmfas_flow_gives_the_code_oathtool_gives(oracle: OracleServer) -> None:
    tocs = one_group(5, 3)
    with oracle.client() as client:
        session = start(client, tocs[4])
        for toc in tocs[1:3]:
            answer = send(client, session, toc)
            assert (answer.status_code, answer.content) == (200, b"")
        assert client.get(f"/sessions/{session['id']}").json()["complete"] is True
        before = time.time()
        answer = code_of(client, session)
        after = time.time()
    assert answer.status_code == 200, answer.text
    released = answer.json()
    step_end = dt.datetime.fromisoformat(released["totp_expires_at"]).timestamp()
    step_start = step_end - 30
    # the oracle's step is one our clock was in during the request (a
    # boundary may fall between before and after; then either step is honest)
    assert int(before) // 30 * 30 <= step_start <= int(after) // 30 * 30
    assert released["totp"] == oathtool(SECRET, step_start)
    assert dt.datetime.fromisoformat(released["session_expires_at"]).timestamp() == (
        dt.datetime.fromisoformat(session["expires_at"]).timestamp()
    )


def test_each_refusal_is_typed_over_http(oracle: OracleServer) -> None:
    tocs, foreign = one_group(3, 2), one_group(3, 2)
    with oracle.client() as client:
        session = start(client, tocs[0])
        sid = session["id"]
        refused(code_of(client, session), 409, "below_threshold")
        assert send(client, session, tocs[0]).status_code == 200  # toc_zero sealed afresh
        refused(code_of(client, session), 409, "duplicate")
        assert send(client, session, foreign[1]).status_code == 200
        refused(code_of(client, session), 422, "wrong_group")
        wrong = client.post(f"/sessions/{sid}/totp", json={"kek": "A" * 100})
        refused(wrong, 400, "bad_kek")
        assert send(client, session, tocs[2]).status_code == 200
        assert code_of(client, session).status_code == 200
        refused(code_of(client, session), 410, "released")
        refused(client.get("/sessions/AAAAAAAAAAAAAAAA"), 404, "not_found")
        refused(client.post("/sessions", json={"toc_zero": {"share": 1}}), 422, "malformed")
        refused(client.post(f"/sessions/{sid}/tocs", json={"encrypted_toc": "x"}), 422, "malformed")
        refused(client.post("/sessions", content=b"{not json"), 422, "malformed")


def test_the_registered_threshold_wins_over_http(
    oracle: OracleServer, registered: tuple[Path, list[Toc]]
) -> None:
    _, tocs = registered
    lying = {**tocs[0].as_dict(), "group_threshold": 2}
    with oracle.client() as client:
        refused(client.post("/sessions", json={"toc_zero": lying}), 422, "wrong_group")
        session = start(client, tocs[0])
        assert session["tocs_threshold"] == 3
        send(client, session, tocs[1])
        refused(code_of(client, session), 409, "below_threshold")
        send(client, session, tocs[2])
        assert code_of(client, session).status_code == 200


def at_once(*calls: Any) -> list[int]:
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(call: Any) -> None:
        barrier.wait(20)
        statuses.append(call().status_code)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(statuses)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_two_oracle_processes_on_one_database_count_a_toc_once_and_release_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Both start together on a new database (they create its tables in
    turn), then take turns on one session."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'oracle.db'}"
    else:
        url = new_pg_database(request.getfixturevalue("pg_server"))
    first = OracleServer(tmp_path / "a", "--database-url", url)
    second = OracleServer(tmp_path / "b", "--database-url", url)
    with all_running(first, second), first.client() as a, second.client() as b:
        tocs = one_group(3, 2)
        session = start(a, tocs[0])
        assert b.get(f"/sessions/{session['id']}").json()["tocs_provided"] == 1
        sealed = age_encrypt(tocs[1].to_json(), session["tek"])
        path, body = f"/sessions/{session['id']}/tocs", {"encrypted_toc": sealed}
        sent = at_once(lambda: a.post(path, json=body), lambda: b.post(path, json=body))
        assert sent == [200, 409]
        released = at_once(lambda: code_of(a, session), lambda: code_of(b, session))
        assert released == [200, 410]
