"""What a shim pulls and pushes as itself (its `sms_...` credential): its
technician bundle (`bundles.py` states the protocol) and its recordings'
resumable upload (`recordings.py` states it). Plus the admin's
`PUT /shims/{id}/age-recipient`, the key bundles are encrypted to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shimmfa.central import bundles, recordings
from shimmfa.central.api.deps import Admin, CentralDep, bearer, get_central
from shimmfa.central.api.schemas import ErrorBody
from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.ingest import authenticate_shim
from shimmfa.central.problems import TooLarge

__all__ = ["router"]

router = APIRouter(prefix="/shims/{shim_id}", tags=["shim sync"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 413, 422, 503)
}
ShimId = Annotated[str, Path(min_length=1, max_length=128)]
SessionId = Annotated[str, Path(min_length=1, max_length=64)]


class BundleOut(BaseModel):
    bundle: str = Field(description="ASCII-armored age ciphertext to the shim's age_recipient")
    sig: str = Field(description="standard base64 Ed25519 signature (see the description)")
    signed_by: str = Field(description="ed25519:<base64 of central's raw public key>")


class UploadOut(BaseModel):
    received: int
    complete: bool
    status: str | None = None
    sha256: str | None = None


class RecipientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    age_recipient: str = Field(min_length=1, max_length=128)


async def _shim(request: Request) -> tuple[Central, ShimIdentity]:
    central = get_central(request)
    identity = await run_in_threadpool(authenticate_shim, central, bearer(request))
    return central, identity


@router.get("/technicians", response_model=BundleOut, responses=ERRORS)
async def get_bundle(shim_id: ShimId, request: Request) -> BundleOut:
    """The shim's technician bundle, as the shim. The signature is over
    `b"shimmfa technician bundle v1\\n" + bundle.encode("ascii")`; the
    plaintext is JSON `{shim_id, version, issued_at, technicians: [...]}`."""
    central, identity = await _shim(request)
    made = await run_in_threadpool(bundles.issue_bundle, central, identity, shim_id)
    return BundleOut(**made.answer())


@router.put("/age-recipient", status_code=204, responses=ERRORS)
async def put_recipient(
    shim_id: ShimId, body: RecipientIn, principal: Admin, central: CentralDep
) -> Response:
    """Register or replace the shim's age recipient (`shimmfa keys show`)."""
    await run_in_threadpool(
        lambda: bundles.set_age_recipient(
            central, shim_id, body.age_recipient, actor=principal.actor
        )
    )
    return Response(status_code=204)


@router.get(
    "/recordings/{session_id}/upload",
    response_model=UploadOut,
    response_model_exclude_none=True,
    responses=ERRORS,
)
async def get_upload(shim_id: ShimId, session_id: SessionId, request: Request) -> UploadOut:
    """How much of a recording central holds: where to resume."""
    central, identity = await _shim(request)
    state = await run_in_threadpool(recordings.upload_state, central, identity, shim_id, session_id)
    return UploadOut(
        received=state.received, complete=state.complete, status=state.status, sha256=state.sha256
    )


@router.put(
    "/recordings/{session_id}",
    response_model=UploadOut,
    responses={**ERRORS, 201: {"model": UploadOut}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_recording(
    shim_id: ShimId,
    session_id: SessionId,
    request: Request,
    offset: Annotated[int, Query(ge=0, le=2**62)],
    size: Annotated[int, Query(ge=1, le=2**62)],
) -> JSONResponse:
    """Bytes `[offset, offset + len)` of the recording's file; 201 once the
    whole file arrived and verified, 422 `recording_invalid` if it does not."""
    central, identity = await _shim(request)
    data = await _body(request, recordings.MAX_CHUNK)
    status, state = await run_in_threadpool(
        lambda: recordings.put_chunk(
            central, identity, shim_id, session_id, offset=offset, size=size, data=data
        )
    )
    return JSONResponse(state.answer(), status_code=status)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"a chunk is at most {limit} bytes", "too_large")
    parts, total = [], 0
    async for part in request.stream():
        total += len(part)
        if total > limit:
            raise TooLarge(f"a chunk is at most {limit} bytes", "too_large")
        parts.append(part)
    return b"".join(parts)
