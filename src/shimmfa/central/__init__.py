"""The central service: registers shims, verifies their signed heartbeats
and events, watches the fleet (missing, recovered, rebooted, tampered,
state reset) and forwards its alarms to the hospital SIEM. FastAPI over
SQLAlchemy (SQLite by default, PostgreSQL at scale), Alembic migrations.

It may import `core`, `transport` and `errors`, never the shim or the
other apps; the CLI imports it lazily. `create_app(settings)` builds the
web app; nothing is made at import time, and importing a part (say
`central.access` for `central token create`) does not import the web app:
the two names below are loaded when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CentralSettings", "create_app"]

if TYPE_CHECKING:
    from shimmfa.central.app import create_app
    from shimmfa.central.settings import CentralSettings


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from shimmfa.central.app import create_app

        return create_app
    if name == "CentralSettings":
        from shimmfa.central.settings import CentralSettings

        return CentralSettings
    raise AttributeError(f"module 'shimmfa.central' has no attribute {name!r}")
