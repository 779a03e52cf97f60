"""SIEM delivery over syslog to a real Debian rsyslogd (tests/e2e/rsyslog_rig.py):
RFC 5424 and CEF over TLS, mutual TLS, a refused client, an outage across a
shim restart, and a receiver that hangs.

What arrived is what rsyslog wrote to its output file, parsed by rsyslog
itself (header fields; the structured data through mmpstrucdata). Events are
counted by event_id, so a duplicate or a loss shows.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rsyslog_rig
from rsyslog_rig import HungReceiver, Rsyslog

from shimmfa.core.events import CATALOGUE, Event
from shimmfa.shim.reporting.outbox import Outbox, new_event
from shimmfa.shim.settings import SiemSection
from shimmfa.transport.build import build_sink
from shimmfa.transport.sender import OutboxSender
from shimmfa.transport.syslog import SyslogSink
from waiting import wait_for

pytestmark = [pytest.mark.e2e]
if rsyslog_rig.unavailable_reason():
    pytestmark.append(pytest.mark.skip(reason=str(rsyslog_rig.unavailable_reason())))

SHIM = "shim-e2e-001"
HOST = "shim-e2e-host"
AWKWARD = 'eve"]\\=|é\nsecond line'


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[..., Rsyslog]]:
    with rsyslog_rig.receivers(tmp_path) as make:
        yield make


class Shim:
    """The shim's side: an outbox in a storage root and its sender."""

    def __init__(self, root: Path, siem: SiemSection, **sender: Any) -> None:
        self.root = root
        self.siem = siem
        self.sender_options = {"backoff_initial": 0.05, "backoff_max": 0.2} | sender
        self.outbox = Outbox(root)
        self.sender: OutboxSender | None = None

    def start(self) -> OutboxSender:
        self.sender = OutboxSender(
            self.outbox, build_sink(self.siem, hostname=HOST), **self.sender_options
        )
        self.sender.start()
        return self.sender

    def restart(self) -> None:
        """As after a shim restart: everything rebuilt from the DB."""
        self.stop()
        self.outbox.close()
        self.outbox = Outbox(self.root)

    def stop(self) -> None:
        if self.sender is not None:
            assert self.sender.stop(), "the sender did not stop within 1 s"
            self.sender = None


@pytest.fixture
def shims(tmp_path: Path) -> Iterator[Callable[..., Shim]]:
    made: list[Shim] = []

    def make(**siem: Any) -> Shim:
        shim = Shim(tmp_path / f"shim{len(made)}", SiemSection(transport="syslog", **siem))
        made.append(shim)
        return shim

    yield make
    for shim in made:
        shim.stop()
        shim.outbox.close()


def sample_events() -> list[Event]:
    return [
        new_event(
            "auth_failure",
            SHIM,
            {"technician_id": AWKWARD, "result": "BAD_CODE", "detail": "wrong code"},
        ),
        new_event("auth_success", SHIM, {"technician_id": "alice@example.org", "session_id": "s1"}),
        new_event("heartbeat", SHIM, {"seq": 7, "boot_count": 3, "uptime_s": 12.5, "late": False}),
        new_event("tamper", SHIM, {"event": "case_opened", "source": "gpio", "detail": None}),
    ]


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def by_event_id(
    messages: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> Counter[str]:
    return Counter(key(message) for message in messages)


def sd_id(message: dict[str, Any]) -> str:
    return str(message["sd"].get("shimmfa@32473", {}).get("event_id"))


def check_rfc5424(message: dict[str, Any], event: Event) -> None:
    assert message["pri"] == str(13 * 8 + CATALOGUE[event.kind].severity)
    assert message["raw"].startswith(f"<{message['pri']}>1 ")
    assert (message["hostname"], message["app"], message["msgid"]) == (HOST, "shimmfa", event.kind)
    reported = dt.datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
    assert abs(reported.timestamp() - event.at) < 2e-6
    wanted = {"event_id": event.event_id, "kind": event.kind, "shim_id": SHIM}
    wanted |= {name: as_text(v) for name, v in event.fields.items() if v is not None}
    assert message["sd"] == {"shimmfa@32473": wanted}


# -- TLS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual-tls"])
def test_events_arrive_over_tls_as_rfc5424_with_their_structured_data(
    rsyslog: Callable[..., Rsyslog], shims: Callable[..., Shim], mutual: bool
) -> None:
    receiver = rsyslog(mutual=mutual)
    client = (
        {"client_cert": str(receiver.pki.client_cert), "client_key": str(receiver.pki.client_key)}
        if mutual
        else {}
    )
    shim = shims(endpoint=receiver.endpoint, ca_file=str(receiver.pki.ca), **client)
    events = sample_events()
    for event in events:
        shim.outbox.add(event)
    shim.start()
    messages = receiver.wait_received(lambda m: len(m) >= len(events))
    assert by_event_id(messages, sd_id) == Counter(e.event_id for e in events)
    for event in events:
        (message,) = [m for m in messages if sd_id(m) == event.event_id]
        check_rfc5424(message, event)
    wait_for(lambda: shim.outbox.pending() == 0, "the sender to mark them delivered")


@pytest.mark.parametrize("client", ["rogue-ca", "no-certificate"])
def test_a_client_the_receiver_does_not_trust_is_refused_and_keeps_its_events(
    rsyslog: Callable[..., Rsyslog], shims: Callable[..., Shim], client: str
) -> None:
    receiver = rsyslog(mutual=True)
    pki = receiver.pki
    certs = (
        {"client_cert": str(pki.rogue_cert), "client_key": str(pki.rogue_key)}
        if client == "rogue-ca"
        else {}
    )
    shim = shims(endpoint=receiver.endpoint, ca_file=str(pki.ca), **certs)
    for event in sample_events():
        shim.outbox.add(event)
    sender = shim.start()
    wait_for(lambda: sender.failures >= 2, "two refusals")
    shim.stop()
    assert shim.outbox.pending() == 4
    assert receiver.received() == []
    assert "certificate" in receiver.log_text()  # rsyslog said why


def untrusted_ca(rsyslog: Callable[..., Rsyslog], tmp_path: Path) -> tuple[Rsyslog, Path]:
    """A receiver whose certificate does not chain to the CA the shim trusts."""
    return rsyslog(), rsyslog_rig.make_pki(tmp_path / "other-pki").ca


def wrong_host_name(rsyslog: Callable[..., Rsyslog], tmp_path: Path) -> tuple[Rsyslog, Path]:
    """The certificate names localhost and 127.0.0.1, not 127.0.0.2 (still this host)."""
    receiver = rsyslog(address="127.0.0.2")
    assert receiver.endpoint == f"tls://127.0.0.2:{receiver.port}"
    return receiver, receiver.pki.ca


@pytest.mark.parametrize("receiver_setup", [untrusted_ca, wrong_host_name])
def test_the_shim_refuses_a_receiver_it_cannot_authenticate_and_keeps_the_event(
    rsyslog: Callable[..., Rsyslog],
    shims: Callable[..., Shim],
    tmp_path: Path,
    receiver_setup: Callable[..., tuple[Rsyslog, Path]],
) -> None:
    receiver, ca = receiver_setup(rsyslog, tmp_path)
    shim = shims(endpoint=receiver.endpoint, ca_file=str(ca))
    shim.outbox.add(sample_events()[0])
    sender = shim.start()
    wait_for(lambda: sender.failures >= 1, "a refusal")
    assert sender.last_error is not None
    assert shim.outbox.pending() == 1
    assert receiver.received() == []


def test_cef_arrives_as_the_msg_of_an_rfc5424_line(
    rsyslog: Callable[..., Rsyslog], shims: Callable[..., Shim]
) -> None:
    receiver = rsyslog()
    shim = shims(endpoint=receiver.endpoint, ca_file=str(receiver.pki.ca), format="cef")
    events = sample_events()
    for event in events:
        shim.outbox.add(event)
    shim.start()
    messages = receiver.wait_received(lambda m: len(m) >= len(events))
    assert len(messages) == len(events)
    for event, message in zip(events, messages, strict=True):
        assert message["sd"] == {} and message["msgid"] == event.kind
        header, extension = split_cef(message["msg"])
        assert header[:3] == ["CEF:0", "shimmfa", "shimmfa"]
        assert header[4:6] == [event.kind, CATALOGUE[event.kind].title]
        assert 0 <= int(header[6]) <= 10
        assert extension["externalId"] == event.event_id
        assert extension["dvchost"] == SHIM
        for name, value in event.fields.items():
            if value is not None:
                assert extension[f"shimmfa_{name}"] == as_text(value)


def split_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """CEF: seven '|' (unescaped) end the header; in the extension a key is
    the word before an unescaped '='; values unescape \\\\, \\=, \\n, \\r."""
    header, current, pos = [], "", 0
    while len(header) < 7:
        if text[pos] == "\\":
            current, pos = current + text[pos + 1], pos + 2
        elif text[pos] == "|":
            header, current, pos = [*header, current], "", pos + 1
        else:
            current, pos = current + text[pos], pos + 1
    rest = text[pos:]
    equals = []
    i = 0
    while i < len(rest):
        if rest[i] == "\\":
            i += 2
            continue
        if rest[i] == "=":
            equals.append(i)
        i += 1
    pairs = {}
    for index, eq in enumerate(equals):
        key = rest[rest.rfind(" ", 0, eq) + 1 : eq]
        end = rest.rfind(" ", 0, equals[index + 1]) if index + 1 < len(equals) else len(rest)
        raw = rest[eq + 1 : end]
        value, j = "", 0
        while j < len(raw):
            if raw[j] == "\\":
                value += {"n": "\n", "r": "\r"}.get(raw[j + 1], raw[j + 1])
                j += 2
            else:
                value += raw[j]
                j += 1
        pairs[key] = value
    return header, pairs


# -- outages --------------------------------------------------------------------------------


def test_a_thousand_events_made_during_an_outage_arrive_once_after_a_restart(
    rsyslog: Callable[..., Rsyslog], shims: Callable[..., Shim]
) -> None:
    receiver = rsyslog()
    shim = shims(endpoint=receiver.endpoint, ca_file=str(receiver.pki.ca))
    before = sample_events()
    for event in before:
        shim.outbox.add(event)
    sender = shim.start()
    wait_for(lambda: shim.outbox.pending() == 0, "the first events to be delivered")

    receiver.stop()
    during = [new_event("tamper", SHIM, {"event": "case_opened", "n": n}) for n in range(1000)]
    for event in during:
        shim.outbox.add(event)
    wait_for(lambda: sender.failures >= 2, "the sender to notice the outage")

    shim.restart()  # the shim goes down and comes back while rsyslog is still down
    assert shim.outbox.pending() == 1000
    shim.start()
    receiver.start()
    expected = Counter(e.event_id for e in before + during)
    wait_for(lambda: shim.outbox.pending() == 0, "the outbox to empty", timeout=30)
    messages = receiver.wait_received(lambda m: len(m) >= len(expected), timeout=30)
    counts = by_event_id(messages, sd_id)
    assert counts == expected, f"missing {len(expected - counts)}, twice {len(counts - expected)}"


# -- a receiver that hangs ------------------------------------------------------------------


@pytest.fixture
def hung() -> Iterator[HungReceiver]:
    receiver = HungReceiver(rcvbuf=2048)
    yield receiver
    receiver.close()


def test_a_hung_receiver_blocks_neither_add_nor_stop(
    hung: HungReceiver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    measured = request.node.user_properties
    outbox = Outbox(tmp_path / "shim")
    events = [
        new_event("tamper", SHIM, {"event": "case_opened", "n": n, "pad": "x" * 400})
        for n in range(300)
    ]
    for event in events:
        outbox.add(event)
    sink = SyslogSink(f"tcp://127.0.0.1:{hung.port}", hostname=HOST, context=None)
    sender = OutboxSender(outbox, sink)
    sender.start()
    # The sender is writing into the receiver, which reads nothing.
    wait_for(lambda: hung.unread() > 0, "the sender to connect and write")

    latencies = []
    for n in range(200):
        event = new_event("heartbeat", SHIM, {"seq": n})
        started = time.perf_counter()
        outbox.add(event)
        latencies.append(time.perf_counter() - started)
    measured.append(("add_latency_median_ms", round(statistics.median(latencies) * 1000, 3)))
    measured.append(("add_latency_max_ms", round(max(latencies) * 1000, 3)))
    assert sender.running and sender.failures == 0  # still stuck in its first delivery
    assert max(latencies) < 0.25, f"add() took up to {max(latencies):.3f} s"

    started = time.monotonic()
    assert sender.stop()
    stopped_in = time.monotonic() - started
    measured.append(("stop_seconds", round(stopped_in, 3)))
    assert stopped_in < 1.0
    assert outbox.pending() == 500  # nothing unacknowledged was taken for delivered
    outbox.close()
