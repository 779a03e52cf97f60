"""What the central tests share: a shim's key and its signed heartbeats and
events, a manual clock, and the TOTP code of a secret at a time."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shimmfa.core.events import make_event, new_event_id, to_json
from shimmfa.core.heartbeat import heartbeat_payload, sign_heartbeat
from shimmfa.core.totp import decode_secret, totp_code

DIGEST = "ab" * 32


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def code_at(secret: str, at: float) -> str:
    return totp_code(decode_secret(secret), int(at // 30), 6, "SHA1")


@dataclass
class SimShim:
    """A simulated shim: its own Ed25519 key, boot count and sequence."""

    shim_id: str
    hardware_id: str = "hw-1"
    boot_count: int = 1
    seq: int = 0
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    credential: str = ""

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return "ed25519:" + base64.b64encode(raw).decode()

    def registration(self, period: float = 60.0, location: str = "ICU 3") -> dict[str, Any]:
        return {
            "shim_id": self.shim_id,
            "hardware_id": self.hardware_id,
            "public_key": self.public_key,
            "location": location,
            "heartbeat_period": period,
        }

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    def heartbeat(
        self,
        *,
        seq: int | None = None,
        boot_count: int | None = None,
        state: str = "ok",
        at: float | None = None,
        shim_id: str | None = None,
    ) -> dict[str, Any]:
        """The next signed heartbeat (or one at the position given)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        payload = heartbeat_payload(
            shim_id=shim_id or self.shim_id,
            hardware_id=self.hardware_id,
            seq=seq,
            boot_count=boot_count or self.boot_count,
            uptime_s=12.5,
            sent_at=time.time() if at is None else at,
            state=state,
            open_session=None,
            config_sha256=DIGEST,
            software_sha256=DIGEST,
        )
        return sign_heartbeat(payload, self.key.sign)

    def reboot(self) -> None:
        self.boot_count += 1
        self.seq = 0

    def event(self, kind: str, at: float | None = None, **fields: Any) -> dict[str, Any]:
        moment = time.time() if at is None else at
        heartbeat = fields.pop("heartbeat", None)
        event = make_event(
            kind,
            event_id=new_event_id(moment, os.urandom(10)),
            at=moment,
            shim_id=self.shim_id,
            fields=fields,
            heartbeat=heartbeat,
        )
        return to_json(event)

    def heartbeat_event(self, **kwargs: Any) -> dict[str, Any]:
        wire = self.heartbeat(**kwargs)
        payload = wire["payload"]
        return self.event(
            "heartbeat",
            heartbeat=wire,
            seq=payload["seq"],
            boot_count=payload["boot_count"],
            state=payload["state"],
        )
