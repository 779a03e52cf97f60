"""What the sync and upload tests share: a real `shimmfa central serve`
(TLS, SQLite; `central.server.CentralServer`) for the module, a shim's side
(its storage root with real keys, state DB, outbox and alerts, registered
at that central with its age recipient, and the real `CentralClient`), and
central's operator actions through its API (enrol, confirm, assign,
revoke). Test modules import `central_server` by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from central.kit import code_at
from central.server import CentralServer
from shimmfa.central.keys import CentralKeys, load_keys
from shimmfa.core.events import Event
from shimmfa.shim.config import parse_settings
from shimmfa.shim.recorder import SessionRecorder
from shimmfa.shim.reporting.alerts import Alerts
from shimmfa.shim.reporting.central import CentralClient
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.keys import init_keys
from shimmfa.shim.state.store import StateStore

DEVICE_TEXT = b"VIP-3200 service console\r\nPUMP CALIBRATION OK\r\n"


@pytest.fixture(scope="module")
def central_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    with CentralServer(tmp_path_factory.mktemp("central") / "central").running() as server:
        yield server


def central_keys(server: CentralServer) -> CentralKeys:
    return load_keys(server.workdir / "central-keys")


class ShimSide:
    """A shim registered at `server`, without its daemon: the parts the
    syncer and the uploader run on, as the daemon builds them."""

    def __init__(self, root: Path, server: CentralServer, shim_id: str, **central: Any) -> None:
        self.root, self.server, self.shim_id = root, server, shim_id
        root.mkdir(parents=True, mode=0o700, exist_ok=True)
        self.keys, _ = init_keys(root)
        self.token_file = root / "central.token"
        self.registered = self.register(self.keys.public_key_text)
        self.settings = self.make_settings(**central)
        self.store = StateStore(root)
        self.outbox = Outbox(root, max_rows=10_000)
        self.alerts = Alerts(self.outbox, shim_id)
        self.client = CentralClient(self.settings.central, shim_id)

    def register(self, public_key: str) -> str:
        credential = self.server.register_shim(
            self.shim_id, public_key, credential_file=self.token_file
        )
        with self.server.client() as client:
            answer = client.put(
                f"/api/v1/shims/{self.shim_id}/age-recipient",
                json={"age_recipient": self.keys.recipient},
            )
        assert answer.status_code == 204, answer.text
        return credential

    def make_settings(self, **central: Any) -> Settings:
        return parse_settings(
            {
                "shim": {"id": self.shim_id},
                "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
                "storage": {"root": str(self.root)},
                "central": {
                    "url": self.server.base_url,
                    "token_file": str(self.token_file),
                    "ca_file": str(self.server.ca_file),
                    "public_key": central_keys(self.server).public_key_text,
                    **central,
                },
            }
        )

    def events(self, kind: str) -> list[Event]:
        return [e.event for e in self.outbox.oldest(10_000) if e.event.kind == kind]

    def record(self, technician: str = "ada@vendor", output: bytes = DEVICE_TEXT) -> str:
        """A finished session recorded by the shim's real `SessionRecorder`,
        encrypted to central's recording recipient; its session ID."""
        recipients = [central_keys(self.server).recording_recipient]
        recorder = SessionRecorder(self.root, self.shim_id, keys=self.keys, recipients=recipients)
        try:
            session_id = recorder.start_session(technician)
            recorder.append_traffic(session_id, "in", b"service\r")  # type: ignore[arg-type]
            recorder.append_traffic(session_id, "out", output)  # type: ignore[arg-type]
            recorder.end_session(session_id, "technician_hangup")
        finally:
            recorder.close()
        return session_id

    def recording(self, session_id: str) -> Path:
        (path,) = (self.root / "sessions").glob(f"{session_id}_*.shrec")
        return path

    def close(self) -> None:
        self.client.close()
        self.outbox.close()
        self.store.close()


def enrol_active(server: CentralServer, technician_id: str, at: float) -> str:
    """Enrol and confirm a technician at central (as an admin); the secret."""
    with server.client() as client:
        made = client.post(
            "/api/v1/technicians",
            json={"technician_id": technician_id, "name": "Ada Field", "company": "Pumps Inc."},
        )
        assert made.status_code == 201, made.text
        secret: str = parse_qs(urlparse(made.json()["otpauth_uri"]).query)["secret"][0]
        confirmed = client.post(
            f"/api/v1/technicians/{technician_id}/confirm", json={"code": code_at(secret, at)}
        )
        assert confirmed.status_code == 200, confirmed.text
    return secret


def assign(server: CentralServer, technician_id: str, shim_id: str) -> None:
    with server.client() as client:
        answer = client.post(
            f"/api/v1/technicians/{technician_id}/assignments", json={"shim_id": shim_id}
        )
    assert answer.status_code == 201, answer.text


def revoke(server: CentralServer, technician_id: str) -> None:
    with server.client() as client:
        answer = client.post(f"/api/v1/technicians/{technician_id}/revoke")
    assert answer.status_code == 200, answer.text


def unreachable_client(side: ShimSide) -> CentralClient:
    """A client of a central that is not there (a closed port): a real
    connection refused."""
    from central.postgres import free_port

    section = side.settings.central.model_copy(update={"url": f"https://127.0.0.1:{free_port()}"})
    return CentralClient(section, side.shim_id, timeout=2.0)
