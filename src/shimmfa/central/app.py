"""The FastAPI application: `create_app(settings)` builds it (no engine or
settings at import time); `app_from_env()` is the factory uvicorn's workers
import (`shimmfa.central.app:app_from_env`), reading `SHIMMFA_CENTRAL_*`.

Rules:
- The app refuses to start unless the database is at the schema head
  (`schema.require_head`, SchemaError).
- Its lifespan runs the fleet monitor thread (which forwards to the SIEM
  while it holds the lease) and stops it, releasing the lease, at shutdown;
  on PostgreSQL it opens the heartbeat's group commit (`ingest_async`).
- `POST /api/v1/heartbeats` is answered before FastAPI's routing
  (`api/heartbeat_path`), by the same code as its documented route.
- The API is under `/api/v1`; OpenAPI at `/openapi.json`, docs at `/docs`;
  the web UI under `/ui` (`central/ui/`), its files under `/static`; the
  quorum oracle (farMFA's four endpoints) under `/quorum`
  (`oracle_mount`), its own OpenAPI at `/quorum/openapi.json`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shimmfa import __version__
from shimmfa.central import oracle_mount, schema, ui
from shimmfa.central.api import (
    breakglass,
    chain,
    errors,
    events,
    ingest,
    login,
    recordings,
    reviews,
    shim_sync,
    shims,
    technicians,
)
from shimmfa.central.api.heartbeat_path import HeartbeatFastPath
from shimmfa.central.api.nul_guard import NulGuard
from shimmfa.central.context import Central
from shimmfa.central.ingest_async import AsyncMover
from shimmfa.central.monitor import MonitorThread
from shimmfa.central.operators import LoginVerifier, TotpLogin
from shimmfa.central.settings import CentralSettings
from shimmfa.central.siem import Forwarder

__all__ = ["API_PREFIX", "app_from_env", "create_app"]

API_PREFIX = "/api/v1"


def create_app(
    settings: CentralSettings,
    *,
    central: Central | None = None,
    monitor: bool = True,
    login_verifier: LoginVerifier | None = None,
) -> FastAPI:
    """The app over `settings` (or an open `central`). `monitor=False`
    leaves the fleet monitor to a test that drives it."""
    central = central or Central(settings)
    schema.require_head(central.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        thread = MonitorThread(central, Forwarder(central)) if monitor else None
        if central.dialect == "postgresql":
            app.state.mover = AsyncMover(central.settings.database_url)
        if thread is not None:
            thread.start()
        try:
            yield
        finally:
            if thread is not None:
                thread.stop()
            if app.state.mover is not None:
                await app.state.mover.close()
            central.close()

    app = FastAPI(
        title="shimmfa central",
        version=__version__,
        description="Registers shims, verifies their signed heartbeats and events, and "
        "watches the fleet: a shim that goes silent is reported missing.",
        lifespan=lifespan,
    )
    app.state.central = central
    app.state.mover = None  # the PostgreSQL fast path, made in the worker's loop
    app.state.login_verifier = login_verifier or TotpLogin(central)
    errors.install(app)
    app.add_middleware(NulGuard)
    app.add_middleware(HeartbeatFastPath, path=f"{API_PREFIX}/heartbeats")
    ui.install(app)
    for router in (
        login.router,
        chain.router,
        shims.router,
        ingest.router,
        events.router,
        technicians.router,
        shim_sync.router,
        recordings.router,
        breakglass.router,
        reviews.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    oracle_mount.mount(app, central)
    return app


def app_from_env() -> FastAPI:
    return create_app(CentralSettings())
