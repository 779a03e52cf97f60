"""The recorder's SIEM transport: seed-style session records into the outbox.

Rules:
- `SessionRecorder(siem=OutboxSiem(outbox, shim_id))`: the recorder's
  `session_start`, `meta` and `session_end` records (the seed's
  `forward(record) -> bool` protocol) become `session_start`, `session_meta`
  and `session_end` events, committed to the outbox before `forward` returns.
- Record keys become field names (lower case, [a-z0-9_], at most 32
  characters); values that are not str/int/float/bool/None become JSON text.
- `forward` answers False, and logs, for a record it cannot queue; it never
  raises (the recorder must not fail because of the SIEM).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
from collections.abc import Mapping
from typing import Any

from shimmfa.core.events import Event, FieldValue
from shimmfa.errors import StateError
from shimmfa.shim.reporting.outbox import Outbox, new_event

__all__ = ["OutboxSiem", "event_fields"]

log = logging.getLogger("shimmfa.outbox")

_RESERVED = {"event_id": "record_event_id", "kind": "record_kind", "shim_id": "record_shim_id"}


def _field_name(key: object) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", str(key).lower())
    if not name[:1].isalpha():
        name = "f_" + name
    name = name[:32]
    return _RESERVED.get(name, name)


def _field_value(value: Any) -> FieldValue:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def event_fields(
    record: Mapping[str, Any], skip: frozenset[str] = frozenset()
) -> dict[str, FieldValue]:
    """`record` as event fields: names made valid, values made scalar."""
    return {_field_name(k): _field_value(v) for k, v in record.items() if k not in skip}


class OutboxSiem:
    """The recorder's `siem` (the seed's `forward(record) -> bool`): its
    session_start, meta and session_end records become outbox events."""

    def __init__(self, outbox: Outbox, shim_id: str) -> None:
        self._outbox = outbox
        self._shim_id = shim_id

    def forward(self, record: dict[str, Any]) -> bool:
        try:
            self._outbox.add(self.event(record))
        except (ValueError, StateError, sqlite3.Error) as exc:
            log.error("SIEM record not queued: %s", exc)
            return False
        return True

    def event(self, record: Mapping[str, Any]) -> Event:
        """The outbox event for one recorder record."""
        kind = record.get("event")
        if kind == "session_start":
            skip, when = {"event", "type", "shim_id"}, record.get("started_at_epoch")
        elif kind == "session_end":
            skip, when = {"event", "type", "shim_id"}, None
        elif record.get("type") == "meta":
            kind, skip, when = "session_meta", {"type", "epoch", "shim_id"}, record.get("epoch")
        else:
            raise ValueError(f"not a recorder record: event={kind!r} type={record.get('type')!r}")
        fields = event_fields(record, frozenset(skip))
        at = when if isinstance(when, int | float) and math.isfinite(when) else None
        return new_event(str(kind), self._shim_id, fields, at=at)
