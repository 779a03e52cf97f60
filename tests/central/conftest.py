"""Fixtures of the central tests: the database (SQLite, and PostgreSQL from
a session-wide throwaway server with a migrated template, one database per
test), the service over it (`Central` on a manual clock, the app in a
TestClient without its monitor thread), and tokens for every role."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pytest_postgresql.janitor import DatabaseJanitor

from central.breakglass_kit import BreakGlass
from central.kit import ManualClock, SimShim
from central.postgres import PostgresServer, postgres_available
from shimmfa.central import access, schema
from shimmfa.central.app import create_app
from shimmfa.central.context import Central
from shimmfa.central.db import open_engine
from shimmfa.central.keys import init_keys
from shimmfa.central.settings import CentralSettings

TEMPLATE = "central_template"
_numbers = itertools.count()
needs_postgres = pytest.mark.skipif(
    not postgres_available(), reason="needs Debian's postgresql (make test installs it)"
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if not postgres_available():
        pytest.skip("needs Debian's postgresql (make test installs it)")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def _janitor(server: PostgresServer, dbname: str, template: str | None = None) -> DatabaseJanitor:
    return DatabaseJanitor(
        user=server.user,
        host=server.host,
        port=server.port,
        dbname=dbname,
        template_dbname=template,
    )


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    _janitor(pg_server, TEMPLATE).init()
    engine = open_engine(pg_server.url(TEMPLATE))
    schema.upgrade(engine)
    engine.dispose()
    return TEMPLATE


@pytest.fixture
def pg_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database for one test."""
    name = f"central_{next(_numbers)}"
    janitor = _janitor(pg_server, name, pg_template)
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    engine = open_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Central's keys (`central keys init`), made once for the session."""
    directory = tmp_path_factory.mktemp("central") / "keys"
    init_keys(directory)
    return directory


@pytest.fixture
def central(
    database_url: str, clock: ManualClock, keys_dir: Path, tmp_path: Path
) -> Iterator[Central]:
    settings = CentralSettings(
        database_url=database_url,
        pool_size=5,
        keys_dir=keys_dir,
        recordings_dir=tmp_path / "recordings",
    )
    made = Central(settings, clock=clock)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def client(central: Central) -> Iterator[TestClient]:
    app = create_app(central.settings, central=central, monitor=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def tokens(central: Central) -> dict[str, str]:
    """role -> a bearer header value for an API token of that role."""
    made = {}
    for role in access.ROLES:
        _, token = access.create_token(central, f"{role}-token", role, actor="test")
        made[role] = token
    return made


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(tokens: dict[str, str]) -> dict[str, str]:
    return auth(tokens["admin"])


@pytest.fixture
def shim(client: TestClient, admin: dict[str, str]) -> SimShim:
    """A registered shim (period 60 s) with its credential."""
    sim = SimShim("shim-a")
    answer = client.post("/api/v1/shims", json=sim.registration(), headers=admin)
    assert answer.status_code == 201, answer.text
    sim.credential = answer.json()["credential"]
    return sim


@pytest.fixture
def breakglass(client: TestClient, central: Central, shim: SimShim) -> BreakGlass:
    """`shim` with a registered break-glass deal, and tokens for its holders."""
    return BreakGlass(client, central, shim)
