"""Building the configured sink (`shimmfa.transport.sinks.build_sink`). The sinks'
deliveries are tested against real receivers: tests/shim/test_outbox.py
(file, noop) and tests/e2e (rsyslog over TLS, an HTTPS server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shimmfa.errors import ConfigError
from shimmfa.shim.settings import SiemSection
from shimmfa.transport.build import build_sink
from shimmfa.transport.sinks import FileSink, HttpsSink, NoopSink
from shimmfa.transport.syslog import SyslogSink

FAKE_KEY_PEM = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n"  # never echoed


def test_each_transport_builds_its_sink(tmp_path: Path) -> None:
    assert isinstance(build_sink(SiemSection()), NoopSink)
    path = str(tmp_path / "e.jsonl")
    assert isinstance(build_sink(SiemSection(transport="file", path=path)), FileSink)
    tcp = SiemSection(transport="syslog", endpoint="tcp://127.0.0.1:514")
    assert isinstance(build_sink(tcp, hostname="h"), SyslogSink)
    tls = SiemSection(transport="syslog", endpoint="tls://localhost:6514")
    assert isinstance(build_sink(tls, hostname="h"), SyslogSink)
    https = SiemSection(transport="https", endpoint="https://localhost/ingest")
    assert isinstance(build_sink(https), HttpsSink)


def test_a_missing_ca_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    siem = SiemSection(
        transport="syslog", endpoint="tls://siem:6514", ca_file=str(tmp_path / "nope.pem")
    )
    with pytest.raises(ConfigError, match="siem.ca_file"):
        build_sink(siem)


def test_an_unusable_client_key_is_a_config_error_that_does_not_show_the_key(
    tmp_path: Path,
) -> None:
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    key.write_text(FAKE_KEY_PEM)
    siem = SiemSection(
        transport="https",
        endpoint="https://siem/ingest",
        client_cert=str(cert),
        client_key=str(key),
    )
    with pytest.raises(ConfigError) as caught:
        build_sink(siem)
    message = str(caught.value)
    assert "siem.client_cert" in message and "siem.client_key" in message
    assert "c2VjcmV0" not in message and "PRIVATE" not in message
