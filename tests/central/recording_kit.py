"""Real recordings for the central tests, made by the shim's own
`SessionRecorder` with a simulated shim's key, and their upload through
the API in chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pyrage import x25519

from central.kit import SimShim
from shimmfa.shim.recorder import SessionRecorder
from shimmfa.shim.state.keys import ShimKeys

DEVICE_TEXT = b"VIP-3200 service console\r\nlogin: "


class Answer(Protocol):
    status_code: int

    def json(self) -> Any: ...


class Client(Protocol):
    def put(self, url: str, **kwargs: Any) -> Answer: ...


def make_recording(
    root: Path,
    sim: SimShim,
    recipients: list[str],
    *,
    technician: str = "tech-1",
    output: bytes = DEVICE_TEXT,
    extra: dict[str, Any] | None = None,
    reason: str = "technician_hangup",
) -> tuple[str, bytes]:
    """(session ID, the `.shrec` file's bytes) of one short session: the
    technician types `service`, the device answers `output`."""
    keys = ShimKeys(sim.key, x25519.Identity.generate(), root / "keys")
    recorder = SessionRecorder(root, sim.shim_id, keys=keys, recipients=recipients)
    try:
        session_id = recorder.start_session(technician, extra=extra)
        recorder.append_traffic(session_id, "in", b"service\r")  # type: ignore[arg-type]
        recorder.append_traffic(session_id, "out", output)  # type: ignore[arg-type]
        meta = recorder.end_session(session_id, reason)
    finally:
        recorder.close()
    assert meta.path is not None
    return session_id, meta.path.read_bytes()


def upload(
    client: Client, sim: SimShim, session_id: str, data: bytes, *, chunk: int = 1 << 20
) -> Answer:
    """PUT `data` in chunks as the shim; the last answer."""
    url = f"/api/v1/shims/{sim.shim_id}/recordings/{session_id}"
    answer: Answer | None = None
    for offset in range(0, len(data), chunk):
        part = data[offset : offset + chunk]
        answer = client.put(
            url,
            params={"offset": offset, "size": len(data)},
            content=part,
            headers={**sim.auth, "Content-Type": "application/octet-stream"},
        )
        if answer.status_code not in (200, 201):
            return answer
    assert answer is not None
    return answer
