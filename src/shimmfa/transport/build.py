"""The sink a configuration names (`build_sink`), and the TLS client
context the network sinks use."""

from __future__ import annotations

import socket
import ssl
from typing import Protocol

from shimmfa.errors import ConfigError
from shimmfa.transport.sender import EventSink
from shimmfa.transport.sinks import FileSink, HttpsSink, NoopSink
from shimmfa.transport.syslog import SyslogSink

__all__ = ["SinkSettings", "build_sink", "tls_context"]


class SinkSettings(Protocol):
    """What `build_sink` reads (the shim's `siem:` section has these keys)."""

    @property
    def transport(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def client_cert(self) -> str | None: ...
    @property
    def client_key(self) -> str | None: ...
    @property
    def format(self) -> str: ...


def tls_context(
    ca_file: str | None,
    client_cert: str | None,
    client_key: str | None,
    *,
    section: str = "siem",
) -> ssl.SSLContext:
    """A client context verifying the server (and its name) against
    `ca_file` (else the system CAs), with our certificate for mutual TLS.
    Errors name the keys as `<section>.ca_file` etc."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{section}.ca_file {ca_file}: cannot load CA certificates ({exc})"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{section}.client_cert {client_cert} / {section}.client_key {client_key}: "
                f"cannot load the certificate and its key ({type(exc).__name__})"
            ) from None
    return context


def build_sink(
    settings: SinkSettings, *, hostname: str | None = None, section: str = "siem"
) -> EventSink:
    """The sink `settings.transport` names. ConfigError for unusable files."""
    s = settings
    if s.transport == "noop":
        return NoopSink()
    if s.transport == "file" and s.path:
        return FileSink(s.path)
    if s.transport == "https" and s.endpoint:
        context = tls_context(s.ca_file, s.client_cert, s.client_key, section=section)
        return HttpsSink(s.endpoint, context=context)
    if s.transport == "syslog" and s.endpoint:
        tls = s.endpoint.startswith("tls://")
        return SyslogSink(
            s.endpoint,
            hostname=hostname or socket.gethostname(),
            context=(
                tls_context(s.ca_file, s.client_cert, s.client_key, section=section)
                if tls
                else None
            ),
            fmt=s.format,
        )
    raise ConfigError(
        f"{section}.transport {s.transport!r} lacks its {section}.endpoint or {section}.path"
    )
