"""The central service: registers shims, verifies their signed heartbeats
and events, watches the fleet (missing, recovered, rebooted, tampered,
state reset) and forwards its alarms to the hospital SIEM. FastAPI over
SQLAlchemy (SQLite by default, PostgreSQL at scale), Alembic migrations.

It may import `core`, `transport` and `errors`, never the shim or the
other apps; the CLI imports it lazily. `create_app(settings)` builds the
web app; nothing is made at import time.
"""

from __future__ import annotations

__all__ = ["CentralSettings", "create_app"]

from shimmfa.central.app import create_app
from shimmfa.central.settings import CentralSettings
