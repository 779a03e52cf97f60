"""`POST /api/v1/heartbeats` served before FastAPI's routing.

Why: the heartbeat is nearly all of central's traffic (100,000 shims at a
60 s period are 1,700 a second). Matching it against every route of the API,
the web UI and the quorum oracle, and the route's dependency machinery,
cost a worker more than verifying the heartbeat's signature
(`benchmarks/central_ingest.py`).

Rules:
- Only a POST to exactly that path, with no query string, is served here;
  everything else (another method, a query string, every other path) goes
  on to the app unchanged, so its answers (405, NUL guard, 404) stay the
  app's.
- The answer is the route's own: `ingest.accept_heartbeat` does the work;
  a Problem is answered as everywhere in the API (`errors.problem_response`);
  anything else propagates to the app's error middleware (a JSON 500).
- A client that hangs up before its body is read gets nothing and changes
  nothing.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shimmfa.central.api.errors import problem_response
from shimmfa.central.api.ingest import accept_heartbeat
from shimmfa.central.problems import Problem

__all__ = ["HeartbeatFastPath"]

_HEADERS = [(b"content-type", b"application/json")]


class HeartbeatFastPath:
    """ASGI middleware (module rules) for the heartbeat at `path`."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await accept_heartbeat(Request(scope, receive))
        except ClientDisconnect:
            return
        except Problem as exc:
            await problem_response(exc)(scope, receive, send)
            return
        headers = [*_HEADERS, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
