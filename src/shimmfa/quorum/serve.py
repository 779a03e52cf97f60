"""The standalone oracle (`shimmfa quorum serve`): its store, its registry
of dealt groups and its app, run with uvicorn.

Rules: exactly one of `ephemeral` (sessions in memory, gone at exit; one
process) and a database engine (SQLite or PostgreSQL, opened by the caller
with `shimmfa.central.db.open_engine`; the tables are created if missing;
several `serve` processes may share one database). Dealer
outputs given with `register` are recorded as dealt groups at start, so
their thresholds win over any toc_zero; `require_registered` refuses
sessions of any other group. TLS needs both the certificate and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import Engine

from shimmfa.errors import QuorumError
from shimmfa.quorum.api import create_app
from shimmfa.quorum.dealing import dealt_groups
from shimmfa.quorum.holder import read_text
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.records import GroupRegistry, SessionStore
from shimmfa.quorum.store_memory import MemoryGroupRegistry, MemorySessionStore
from shimmfa.quorum.store_sql import SqlGroupRegistry, SqlSessionStore, create_tables

__all__ = ["ServeOptions", "build_app", "load_deal", "run"]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    ephemeral: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    register: tuple[Path, ...] = ()
    require_registered: bool = False
    log_level: str = "warning"


def load_deal(path: Path) -> dict[str, object]:
    """A dealer's output file, parsed."""
    try:
        document = json.loads(read_text(path))
    except ValueError:
        raise QuorumError(f"{path}: not JSON; give the file `shimmfa quorum deal` wrote") from None
    dealt_groups(document)
    return dict(document)


def build_app(options: ServeOptions, engine: Engine | None = None) -> FastAPI:
    """The oracle's app, in memory (`ephemeral`) or on `engine`."""
    if options.ephemeral == (engine is not None):
        raise QuorumError("give either --ephemeral or --database-url URL")
    store: SessionStore
    registry: MemoryGroupRegistry | SqlGroupRegistry
    if engine is None:
        store, registry = MemorySessionStore(), MemoryGroupRegistry()
    else:
        create_tables(engine)
        store, registry = SqlSessionStore(engine), SqlGroupRegistry(engine)
    for path in options.register:
        registry.register(dealt_groups(load_deal(path)))
    dealt: GroupRegistry = registry
    return create_app(Oracle(store, dealt, require_registered=options.require_registered))


def run(options: ServeOptions, engine: Engine | None = None) -> None:
    """Serve until interrupted."""
    import uvicorn

    if (options.tls_cert is None) != (options.tls_key is None):
        raise QuorumError("give both --tls-cert and --tls-key, or neither")
    app = build_app(options, engine)
    uvicorn.run(
        app,
        host=options.host,
        port=options.port,
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        log_level=options.log_level,
        access_log=False,
        server_header=False,
    )
