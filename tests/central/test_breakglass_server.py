"""Break-glass against a real `shimmfa central serve` (uvicorn, TLS, two
workers) on SQLite and on PostgreSQL, with the real peers: holders open
their dealt Tocs with Debian's `age -d` and seal them to the session's TEK
with `age -r TEK -a` (or `shimmfa quorum approve --token-file` against the
oracle mounted at /quorum); the released code is `oathtool --totp -b
<secret>` at its time step; concurrent code requests across the workers
release it once; farMFA's own flow (toc_zero, Tocs, the KEK) works on the
mounted endpoints unchanged."""

from __future__ import annotations

import itertools
import ssl
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from central.breakglass_kit import Deal
from central.conftest import needs_postgres
from central.kit import SimShim
from central.server import SHIMMFA, CentralServer
from quorum.kit import needs_age, needs_oathtool, oathtool
from shimmfa.central import access
from shimmfa.central.context import Central
from shimmfa.central.settings import CentralSettings

pytestmark = [needs_age, needs_oathtool]
NUMBERS = itertools.count()


class Rig:
    def __init__(self, server: CentralServer, workdir: Path) -> None:
        self.server, self.workdir = server, workdir
        self.deal = Deal()
        self.shim_credential = server.register_shim("pump-7", SimShim("pump-7").public_key)
        self.tokens: dict[str, str] = {}
        people = {h.name: h.role for h in self.deal.holders.values()} | {
            "rita": "clinical_engineering"
        }
        central = Central(CentralSettings(database_url=server.database_url))
        try:
            for name, role in people.items():
                self.tokens[name] = access.create_token(central, name, role, actor="test")[1]
        finally:
            central.close()
        for holder in self.deal.holders.values():  # each holder's own files
            key = workdir / f"{holder.name}.key"
            key.write_text(str(holder.identity) + "\n")
            key.chmod(0o600)
            (workdir / f"{holder.name}.toc.age").write_text(self.deal.sealed_to_holder(holder.name))
            token = workdir / f"{holder.name}.token"
            token.write_text(self.tokens[holder.name] + "\n")
            token.chmod(0o600)

    def client(self, who: str) -> httpx.Client:
        return self.server.client(self.tokens[who])

    def sealed_by_age(self, name: str, tek: str) -> str:
        """The holder's way with Debian's age: open the dealt Toc with their
        key, seal it to the TEK."""
        opened = subprocess.run(
            ["age", "-d", "-i", str(self.workdir / f"{name}.key")],
            input=self.deal.sealed_to_holder(name), capture_output=True, text=True, check=True,
            timeout=30,
        ).stdout  # fmt: skip
        return subprocess.run(
            ["age", "-r", tek, "-a"], input=opened, capture_output=True, text=True, check=True,
            timeout=30,
        ).stdout  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One server (two workers) per database for the module; each test uses
    its own requests and sessions."""
    tmp_path = tmp_path_factory.mktemp(f"breakglass-{request.param}")
    database_url = f"sqlite:///{tmp_path / 'central.db'}"
    if request.param == "postgresql":
        server_pg = request.getfixturevalue("pg_server")
        name = f"breakglass_{next(NUMBERS)}"
        DatabaseJanitor(user=server_pg.user, host=server_pg.host, port=server_pg.port,
                        dbname=name).init()  # fmt: skip
        database_url = server_pg.url(name)
    server = CentralServer(tmp_path / "central", database_url=database_url, workers=2)
    with server.running():
        with server.client(server.admin_token) as admin:
            assert admin.get("/api/v1/me").status_code == 200
        made = Rig(server, tmp_path)
        with server.client(made.shim_credential) as shim:
            answer = shim.post("/api/v1/shims/pump-7/breakglass", json=made.deal.record())
        assert answer.status_code == 201, answer.text
        yield made


def step_of(code: dict[str, Any]) -> float:
    """The start of the time step the code was made for."""
    ends = datetime.fromisoformat(code["totp_expires_at"].replace("Z", "+00:00"))
    return ends.timestamp() - 30


def test_a_request_approved_by_both_departments_releases_oathtools_code_once(
    rig: Rig,
) -> None:
    with rig.client("rita") as rita:
        opened = rita.post(
            "/api/v1/breakglass/requests",
            json={"shim_id": "pump-7", "reason": "pump 7 occluded, vendor on site"},
        )
        assert opened.status_code == 201, opened.text
    request, kek = opened.json()["request"], opened.json()["kek"]
    path = f"/api/v1/breakglass/requests/{request['id']}"
    for name in ("ann", "bob"):
        with rig.client(name) as holder:
            sealed = rig.sealed_by_age(name, request["tek"])
            answer = holder.post(f"{path}/approvals", json={"encrypted_toc": sealed})
            assert answer.status_code == 201, answer.text
    approved = subprocess.run(
        [str(SHIMMFA), "quorum", "approve", "--url", f"{rig.server.base_url}/quorum",
         "--session", request["session_id"], "--tek", request["tek"],
         "--toc-file", str(rig.workdir / "ivan.toc.age"), "-i", str(rig.workdir / "ivan.key"),
         "--token-file", str(rig.workdir / "ivan.token"), "--ca-file", str(rig.server.ca_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    assert "3 of the 3 Tocs" in approved.stdout
    with rig.client("rita") as rita:
        state = rita.get(path).json()
        assert [g["approvers"] for g in state["groups"]] == [
            ["token:ann", "token:bob"], ["token:ivan"]
        ]  # fmt: skip

        def ask(_: int) -> httpx.Response:
            with rig.client("rita") as client:
                return client.post(f"{path}/code", json={"kek": kek})

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, range(4)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 410, 410, 410], [a.text for a in answers]
    code = next(a.json() for a in answers if a.status_code == 200)
    assert code["totp"] == oathtool(rig.deal.secret, step_of(code))
    assert {a.json()["code"] for a in answers if a.status_code == 410} == {"released"}


def test_approvals_sent_at_once_to_both_workers_all_count(rig: Rig) -> None:
    with rig.client("rita") as rita:
        opened = rita.post("/api/v1/breakglass/requests",
                           json={"shim_id": "pump-7", "reason": "ventilator 3"})  # fmt: skip
    request, kek = opened.json()["request"], opened.json()["kek"]
    names = ("ann", "bob", "cat", "ivan", "ines")
    sealed = {name: rig.sealed_by_age(name, request["tek"]) for name in names}

    def approve(name: str) -> int:
        with rig.client(name) as holder:
            return holder.post(
                f"/api/v1/breakglass/requests/{request['id']}/approvals",
                json={"encrypted_toc": sealed[name]},
            ).status_code

    with ThreadPoolExecutor(len(names)) as pool:
        assert list(pool.map(approve, names)) == [201] * len(names)
    with rig.client("rita") as rita:
        state = rita.get(f"/api/v1/breakglass/requests/{request['id']}").json()
        assert [len(g["approvers"]) for g in state["groups"]] == [3, 2]
        code = rita.post(f"/api/v1/breakglass/requests/{request['id']}/code", json={"kek": kek})
    assert code.json()["totp"] == oathtool(rig.deal.secret, step_of(code.json()))


def test_farmfas_own_flow_on_the_mounted_oracle(rig: Rig) -> None:
    """An infosec holder is the applicant with her clear Toc (toc_zero), two
    clinical holders send theirs sealed by Debian's age; the code is hers
    alone, once."""
    ines = rig.deal.toc("ines").as_dict()
    trust = ssl.create_default_context(cafile=str(rig.server.ca_file))
    with httpx.Client(base_url=rig.server.base_url, verify=trust) as anon:
        assert anon.post("/quorum/sessions", json={"toc_zero": ines}).status_code == 401
    with rig.client("ines") as client:
        opened = client.post("/quorum/sessions", json={"toc_zero": ines, "ttl": 600})
        assert opened.status_code == 200, opened.text
    session = opened.json()
    assert set(session) >= {"id", "toc_group_id", "expires_at", "created_at", "ttl",
                            "complete", "tocs_in_group", "tocs_threshold", "tocs_provided",
                            "tek", "kek"}  # fmt: skip
    sid = session["id"]
    for name in ("cat", "bob"):
        with rig.client(name) as holder:
            sealed = rig.sealed_by_age(name, session["tek"])
            answer = holder.post(f"/quorum/sessions/{sid}/tocs", json={"encrypted_toc": sealed})
            assert answer.status_code == 200, answer.text
            resealed = {"encrypted_toc": rig.sealed_by_age(name, session["tek"])}
            again = holder.post(f"/quorum/sessions/{sid}/tocs", json=resealed)
            assert (again.status_code, again.json()["code"]) == (409, "duplicate")
    with rig.client("ann") as ann:
        assert ann.get(f"/quorum/sessions/{sid}").json()["tocs_provided"] == 3
        stolen = ann.post(f"/quorum/sessions/{sid}/totp", json={"kek": session["kek"]})
        assert (stolen.status_code, stolen.json()["code"]) == (403, "not_permitted")
    with rig.client("ines") as client:
        code = client.post(f"/quorum/sessions/{sid}/totp", json={"kek": session["kek"]})
        assert code.status_code == 200, code.text
        assert code.json()["totp"] == oathtool(rig.deal.secret, step_of(code.json()))
        again = client.post(f"/quorum/sessions/{sid}/totp", json={"kek": session["kek"]})
        assert (again.status_code, again.json()["code"]) == (410, "released")
    with rig.server.client() as admin:
        events = admin.get("/api/v1/events", params={"source": "central", "limit": 500}).json()
    kinds = [(e["kind"], e["fields"].get("approver")) for e in events["items"]]
    assert ("breakglass_session_opened", None) in kinds
    assert ("breakglass_approved", "token:cat") in kinds
    assert ("breakglass_approval_refused", "token:bob") in kinds  # his second Toc
    assert any(kind == "breakglass_code_released" for kind, _ in kinds)
