"""Refuse a request whose path or query string holds a NUL character
(`%00`) before any route sees it: no database stores NUL in text
(PostgreSQL refuses it outright), so a search, a cursor or an ID with one
can only be a mistake or a probe. The answer is the API's usual JSON error,
400 `bad_request`, the same on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["NulGuard"]

_BODY = json.dumps(
    {"code": "bad_request", "message": "the URL holds a NUL character (%00)"}
).encode()


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    return b"%00" in query or b"\x00" in query or "\x00" in path


class NulGuard:
    """ASGI middleware (module rules)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_nul(scope):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, Any]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_BODY)).encode()),
        ]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": _BODY})
