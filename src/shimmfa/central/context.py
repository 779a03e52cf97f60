"""`Central`: what every part of the service is handed: the settings, the
database engine and its sessions, the clock, and the cache of shim
identities. Made by `create_app(settings)` or a CLI command, never at import.

Rules:
- The service keeps no state outside its database. The one cache here,
  `IdentityCache` (a shim credential's hash -> the shim's row key and public
  key), only holds facts that never change for a row: a shim's credential
  and key are fixed at registration, and row keys are never reused, so a
  stale entry can only name a row that no longer exists - which the ingest
  statement notices (it updates nothing) before anything is accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shimmfa.central.db import SessionFactory, dialect, open_engine, session_factory
from shimmfa.central.keys import CentralKeys, load_keys
from shimmfa.central.problems import Unavailable
from shimmfa.central.settings import CentralSettings
from shimmfa.errors import ConfigError, KeyFileError

__all__ = ["Central", "IdentityCache", "ShimIdentity"]

MAX_CACHED = 250_000


@dataclass(frozen=True, slots=True)
class ShimIdentity:
    """Who a shim credential belongs to."""

    pk: int
    shim_id: str
    raw_key: bytes = field(repr=False)
    credential_hash: str = field(repr=False)


class IdentityCache:
    """Bounded map of credential hash -> `ShimIdentity`, safe across threads."""

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self._items: dict[str, ShimIdentity] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, credential_hash: str) -> ShimIdentity | None:
        return self._items.get(credential_hash)

    def put(self, identity: ShimIdentity) -> None:
        with self._lock:
            if len(self._items) >= self._limit:
                self._items.clear()
            self._items[identity.credential_hash] = identity

    def forget(self, credential_hash: str) -> None:
        with self._lock:
            self._items.pop(credential_hash, None)


class Central:
    """The service's resources; `close()` releases the database pool."""

    def __init__(
        self, settings: CentralSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.engine = open_engine(settings.database_url, pool_size=settings.pool_size)
        self.sessions: SessionFactory = session_factory(self.engine)
        # the same pool, each statement its own transaction (the ingest's one)
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.clock = clock
        self.identities = IdentityCache()
        self._keys: CentralKeys | None = None

    @property
    def keys(self) -> CentralKeys:
        """Central's keys (`keys.load_keys`), loaded at first use; 503
        `keys_unavailable` to the caller while they are missing or unsafe."""
        if self._keys is None:
            try:
                self._keys = load_keys(self.settings.keys_dir)
            except (ConfigError, KeyFileError) as exc:
                raise Unavailable(str(exc), "keys_unavailable") from None
        return self._keys

    @property
    def dialect(self) -> str:
        return dialect(self.engine)

    @property
    def forward(self) -> bool:
        """Whether central events are queued for the SIEM."""
        return self.settings.siem_transport != "noop"

    def close(self) -> None:
        self.engine.dispose()
