"""SIEM delivery over HTTPS (`siem.transport: https`) to a real TLS HTTP
server (Python's http.server behind ssl, certificates from rsyslog_rig):
a 2xx answer means delivered, anything else keeps the events; the server
is verified against `siem.ca_file`, and mutual TLS works."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rsyslog_rig
from rsyslog_rig import Pki

from shimmfa.core.events import from_json
from shimmfa.shim.reporting.outbox import Outbox, new_event
from shimmfa.shim.settings import SiemSection
from shimmfa.transport.build import build_sink
from shimmfa.transport.sender import OutboxSender
from waiting import wait_for

SHIM = "shim-https"


class Collector(http.server.ThreadingHTTPServer):
    """Keeps every POSTed body; answers `status` (and `location` for 3xx)."""

    def __init__(self, pki: Pki, *, require_client: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(pki.ca)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server_address[1]}/api/v1/events"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes are expected in these tests


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        self.server.paths.append(self.path)
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return rsyslog_rig.make_pki(tmp_path / "pki")


@pytest.fixture
def collectors(pki: Pki) -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(require_client: bool = False) -> Collector:
        collector = Collector(pki, require_client=require_client)
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., tuple[Outbox, OutboxSender]]]:
    made: list[tuple[Outbox, OutboxSender]] = []

    def start(count: int, **siem: Any) -> tuple[Outbox, OutboxSender]:
        outbox = Outbox(tmp_path / f"shim{len(made)}")
        for n in range(count):
            outbox.add(new_event("tamper", SHIM, {"event": "case_opened", "n": n, "x": 'a"\n'}))
        sink = build_sink(SiemSection(transport="https", **siem))
        sender = OutboxSender(outbox, sink, batch_size=10, backoff_initial=0.05, backoff_max=0.1)
        made.append((outbox, sender))
        sender.start()
        return outbox, sender

    yield start
    for outbox, sender in made:
        assert sender.stop()
        outbox.close()


def test_events_are_posted_in_batches_and_a_2xx_marks_them_delivered(
    collectors: Callable[..., Collector], run: Callable[..., Any], pki: Pki
) -> None:
    collector = collectors()
    collector.status = 202
    outbox, _ = run(25, endpoint=collector.url, ca_file=str(pki.ca))
    wait_for(lambda: outbox.pending() == 0, "delivery")
    assert [len(body["events"]) for body in collector.bodies] == [10, 10, 5]
    events = [from_json(e) for body in collector.bodies for e in body["events"]]
    assert [e.fields["n"] for e in events] == list(range(25))
    assert set(collector.paths) == {"/api/v1/events"}


@pytest.mark.parametrize("status", [500, 404, 302])
def test_any_other_answer_keeps_the_events(
    collectors: Callable[..., Collector], run: Callable[..., Any], pki: Pki, status: int
) -> None:
    collector = collectors()
    collector.status = status
    outbox, sender = run(3, endpoint=collector.url, ca_file=str(pki.ca))
    wait_for(lambda: sender.failures >= 2, "two failed posts")
    assert outbox.pending() == 3
    collector.status = 200
    wait_for(lambda: outbox.pending() == 0, "delivery once the server answers 200")


def test_mutual_tls_with_the_client_certificate_and_not_without(
    collectors: Callable[..., Collector], run: Callable[..., Any], pki: Pki
) -> None:
    collector = collectors(require_client=True)
    without, refused = run(2, endpoint=collector.url, ca_file=str(pki.ca))
    wait_for(lambda: refused.failures >= 1, "a refused handshake")
    assert without.pending() == 2 and collector.bodies == []
    outbox, _ = run(
        2,
        endpoint=collector.url,
        ca_file=str(pki.ca),
        client_cert=str(pki.client_cert),
        client_key=str(pki.client_key),
    )
    wait_for(lambda: outbox.pending() == 0, "delivery with mutual TLS")
    assert without.pending() == 2


def test_a_server_outside_the_ca_file_gets_nothing(
    collectors: Callable[..., Collector], run: Callable[..., Any], tmp_path: Path
) -> None:
    collector = collectors()
    other = rsyslog_rig.make_pki(tmp_path / "other")
    outbox, sender = run(2, endpoint=collector.url, ca_file=str(other.ca))
    wait_for(lambda: sender.failures >= 1, "a failed verification")
    assert sender.last_error is not None
    assert outbox.pending() == 2 and collector.bodies == []
