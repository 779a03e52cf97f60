"""`POST /api/v1/heartbeats` and `POST /api/v1/events`: what shims send,
authenticated by the shim's own credential.

The heartbeat endpoint is the hot path: served before FastAPI's routing
(`heartbeat_path`), it reads the raw body (no pydantic model); the
credential is cached, the signature verified once, and on PostgreSQL the
heartbeat joins the worker's next batch statement (`ingest_async`); on
SQLite it takes one call to the thread pool. Both endpoints document their
body in OpenAPI by hand."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shimmfa.central.api.deps import bearer, get_central
from shimmfa.central.api.schemas import BatchOut, ErrorBody, HeartbeatAccepted
from shimmfa.central.credentials import token_hash
from shimmfa.central.event_ingest import ingest_events
from shimmfa.central.ingest import authenticate_shim, ingest_heartbeat, refuse, verify_for
from shimmfa.central.ingest_async import AsyncMover
from shimmfa.central.models import ShimRow
from shimmfa.central.problems import Invalid, TooLarge
from shimmfa.core.heartbeat import MAX_WIRE_BYTES, VerifiedHeartbeat

__all__ = ["router"]

router = APIRouter(tags=["ingest"])

MAX_BATCH_BYTES = 8 * 1024 * 1024
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 403, 409, 413, 422)
}
_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_HEX = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COUNTER = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
WIRE_SCHEMA = {
    "type": "object",
    "required": ["payload", "sig"],
    "additionalProperties": False,
    "properties": {
        "payload": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "shim_id",
                "hardware_id",
                "seq",
                "boot_count",
                "uptime_s",
                "sent_at",
                "state",
                "open_session",
                "config_sha256",
                "software_sha256",
            ],  # fmt: skip
            "properties": {
                "shim_id": _ID,
                "hardware_id": _ID,
                "seq": _COUNTER,
                "boot_count": _COUNTER,
                "uptime_s": {"type": "number", "minimum": 0},
                "sent_at": {"type": "string", "example": "2026-01-31T12:00:00.000Z"},
                "state": {"type": "string", "enum": ["ok", "tampered"]},
                "open_session": {"type": ["string", "null"]},
                "config_sha256": _HEX,
                "software_sha256": _HEX,
            },
        },
        "sig": {"type": "string", "description": "base64 Ed25519 signature"},
    },
}
BATCH_SCHEMA = {
    "type": "object",
    "required": ["events"],
    "additionalProperties": False,
    "properties": {
        "events": {
            "type": "array",
            "maxItems": 1000,
            "items": {"type": "object", "description": "core.events.to_json(event)"},
        }
    },
}


def _body_doc(schema: dict[str, object]) -> dict[str, object]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _accepted(h: VerifiedHeartbeat) -> bytes:
    return (
        b'{"accepted":true,"shim_id":'
        + json.dumps(h.shim_id, ensure_ascii=False).encode()
        + b',"boot_count":%d,"seq":%d}' % (h.boot_count, h.seq)
    )


def _heartbeat(request: Request, credential: str | None, body: bytes) -> bytes:
    central = get_central(request)
    identity = authenticate_shim(central, credential)
    return _accepted(ingest_heartbeat(central, identity, body))


async def _heartbeat_async(
    request: Request, mover: AsyncMover, credential: str | None, body: bytes
) -> bytes:
    """PostgreSQL: verified in the event loop, moved on an async connection
    (`ingest_async`); only a cache miss and a refusal take a thread."""
    central = get_central(request)
    identity = central.identities.get(token_hash(credential)) if credential else None
    if identity is None:
        identity = await run_in_threadpool(authenticate_shim, central, credential)
    h = verify_for(identity, body)
    wire = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    now = central.clock()
    if not await mover.move(identity, h, wire, now):
        raise await run_in_threadpool(refuse, central, identity, h, now)
    return _accepted(h)


async def accept_heartbeat(request: Request) -> bytes:
    """The answer to `POST /api/v1/heartbeats` (200's body), or the Problem
    to answer. `heartbeat_path.HeartbeatFastPath` serves it outside
    FastAPI's routing; the route below documents it (and serves it when the
    fast path is not installed)."""
    credential = bearer(request)
    body = await _read(request, MAX_WIRE_BYTES + 1)
    mover: AsyncMover | None = request.app.state.mover
    if mover is not None:
        return await _heartbeat_async(request, mover, credential, body)
    answer: bytes = await run_in_threadpool(_heartbeat, request, credential, body)
    return answer


@router.post(
    "/heartbeats",
    response_model=HeartbeatAccepted,
    responses=ERRORS,
    openapi_extra=_body_doc(WIRE_SCHEMA),
)
async def post_heartbeat(request: Request) -> JSONResponse:
    """One signed heartbeat in its wire form `{"payload": {...}, "sig": ...}`.
    200 accepted; 401 no or unknown credential; 403 bad signature or another
    shim's payload; 409 `not_newer` or `state_reset`; 422 malformed."""
    return _Raw(await accept_heartbeat(request))


class _Raw(JSONResponse):
    def render(self, content: object) -> bytes:
        assert isinstance(content, bytes)  # noqa: S101 - built above
        return content


def _events(request: Request, credential: str | None, body: bytes) -> BatchOut:
    central = get_central(request)
    identity = authenticate_shim(central, credential)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise Invalid("the body is not JSON", "malformed") from None
    result = ingest_events(central, identity, document)
    return BatchOut(accepted=result.accepted, new=result.new, stale=result.stale)


@router.post(
    "/events", response_model=BatchOut, responses=ERRORS, openapi_extra=_body_doc(BATCH_SCHEMA)
)
async def post_events(request: Request) -> BatchOut:
    """A batch `{"events": [...]}` as the shim's https sender posts it: all
    of this shim, each stored once (by event_id); heartbeats inside verified.
    Replies how many were accepted, new, and stale heartbeats."""
    credential = bearer(request)
    body = await _read(request, MAX_BATCH_BYTES)
    result: BatchOut = await run_in_threadpool(_events, request, credential, body)
    return result


def _ping(request: Request, credential: str | None) -> bytes:
    identity = authenticate_shim(get_central(request), credential)
    return b'{"shim_id":' + json.dumps(identity.shim_id, ensure_ascii=False).encode() + b"}"


@router.get("/ping", responses={401: {"model": ErrorBody}})
async def get_ping(request: Request) -> JSONResponse:
    """An empty request authenticated as a shim: the same path as a
    heartbeat without the signature and the database (the framework's
    floor, which `benchmarks/central_ingest.py` measures)."""
    answer = await run_in_threadpool(_ping, request, bearer(request))
    return _Raw(answer)


def _position(request: Request, credential: str | None) -> bytes:
    central = get_central(request)
    identity = authenticate_shim(central, credential)
    with central.sessions() as session:
        row = session.get(ShimRow, identity.pk)
        boot, seq = (row.boot_count, row.seq) if row is not None else (None, None)
    return json.dumps(
        {"shim_id": identity.shim_id, "boot_count": boot, "seq": seq}, ensure_ascii=False
    ).encode()


@router.get("/position", responses={401: {"model": ErrorBody}})
async def get_position(request: Request) -> JSONResponse:
    """The last `(boot_count, seq)` central accepted from the calling shim
    (null before its first heartbeat): a shim recovering its state continues
    above it (`shimmfa state recover`)."""
    answer = await run_in_threadpool(_position, request, bearer(request))
    return _Raw(answer)
