"""Where the outbox delivers: `noop`, `file`, `syslog`, `https` (`siem.transport`).

Rules:
- A sink's `deliver(events)` returns how many of the first events the
  receiver has taken; the outbox forgets exactly those. "Taken" means:
  `file` - written and fsynced; `https` - a 2xx answer to the POST;
  `syslog` - every byte acknowledged by the receiver's TCP stack (the
  socket's unacknowledged-bytes count, ioctl SIOCOUTQ, is 0) and the
  connection still open. A receiver that refuses us (e.g. rsyslog turning
  down a client certificate it does not trust) closes the connection right
  after the TLS handshake, so a new connection is on probation for
  `probation` seconds before anything is sent on it.
- Every network step has a timeout; `abort()` (from the stopping thread)
  shuts the socket down so a hung receiver releases the sender at once.
- Any error drops the connection; the events stay in the outbox and are sent
  again later. Logs name the receiver as scheme://host:port only.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shimmfa import __version__
from shimmfa.core.events import Event, to_json
from shimmfa.core.syslog import cef, octet_frame, rfc5424
from shimmfa.errors import ConfigError
from shimmfa.shim.outbox import EventSink
from shimmfa.shim.settings import SiemSection

__all__ = ["FileSink", "HttpsSink", "NoopSink", "SyslogSink", "build_sink"]

log = logging.getLogger("shimmfa.sinks")

SIOCOUTQ = 0x5411  # Linux: bytes in a TCP socket's send queue not yet acknowledged


class NoopSink:
    """Discards events (the seed's default transport)."""

    def deliver(self, events: Sequence[Event]) -> int:
        return len(events)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileSink:
    """Appends events as JSON lines and fsyncs before reporting them taken."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def deliver(self, events: Sequence[Event]) -> int:
        lines = b"".join(
            json.dumps(to_json(e), allow_nan=False, sort_keys=True).encode() + b"\n" for e in events
        )
        try:
            fd = self._open()
            view = memoryview(lines)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            log.warning("SIEM file %s: %s; events stay in the outbox", self.path, exc.strerror)
            self.close()
            return 0
        return len(events)

    def _open(self) -> int:
        if self._fd is None:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: end it
                os.write(fd, b"\n")
            if created:
                dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            self._fd = fd
        return self._fd

    def abort(self) -> None:
        pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirected POST is not a delivery: the 3xx is an error


class HttpsSink:
    """POSTs `{"events": [...]}` as JSON; any 2xx answer means taken."""

    def __init__(
        self,
        url: str,
        *,
        context: ssl.SSLContext,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        parts = urlsplit(url)
        self._where = f"https://{parts.hostname}:{parts.port or 443}"
        self._timeout = timeout
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirect()
        )

    def deliver(self, events: Sequence[Event]) -> int:
        body = json.dumps({"events": [to_json(e) for e in events]}, allow_nan=False).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be https
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"shimmfa/{__version__}"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError, http.client.HTTPException) as exc:
            log.warning("SIEM %s: %s; events stay in the outbox", self._where, _reason(exc))
            return 0
        if 200 <= status < 300:
            return len(events)
        log.warning("SIEM %s answered HTTP %d; events stay in the outbox", self._where, status)
        return 0

    def abort(self) -> None:
        pass  # urllib cannot be interrupted; every request has a timeout

    def close(self) -> None:
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    return f"{type(exc).__name__}: {exc}"


class _RefusedError(ConnectionError):
    pass


class SyslogSink:
    """RFC 5424 (or CEF) over TCP or TLS, RFC 6587 octet-counting frames."""

    def __init__(
        self,
        endpoint: str,
        *,
        hostname: str,
        context: ssl.SSLContext | None,
        fmt: str = "rfc5424",
        app: str = "shimmfa",
        connect_timeout: float = 5.0,
        write_timeout: float = 10.0,
        ack_timeout: float = 10.0,
        probation: float = 0.5,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.hostname is None or parts.port is None:
            raise ValueError("a syslog endpoint needs a host and a port")
        self._host, self._port = parts.hostname, parts.port
        self._where = f"{parts.scheme}://{self._host}:{self._port}"
        self._context = context
        self._hostname = hostname
        self._app = app
        self._procid = os.getpid()
        self._cef = fmt == "cef"
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._ack_timeout = ack_timeout
        self._probation = probation
        self._sock: socket.socket | None = None
        self._handle: socket.socket | None = None  # a dup of the fd, for abort()
        self._lock = threading.Lock()
        self._aborted = threading.Event()

    def render(self, event: Event) -> bytes:
        if self._cef:
            return cef(event, self._hostname, self._app, self._procid, version=__version__)
        return rfc5424(event, self._hostname, self._app, self._procid)

    def deliver(self, events: Sequence[Event]) -> int:
        data = b"".join(octet_frame(self.render(e)) for e in events)
        try:
            if self._aborted.is_set():
                raise _RefusedError("stopping")
            sock = self._sock
            if sock is not None:
                self._check_open(sock)
            else:
                sock = self._connect()
            sock.settimeout(self._write_timeout)
            sock.sendall(data)
            self._await_ack(sock)
            self._check_open(sock)
        except (OSError, ssl.SSLError) as exc:
            if not self._aborted.is_set():
                log.warning("SIEM %s: %s; events stay in the outbox", self._where, _reason(exc))
            self._drop()
            return 0
        return len(events)

    def _connect(self) -> socket.socket:
        infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        error: OSError = ConnectionError("no address")
        for family, kind, proto, _, address in infos:
            plain = socket.socket(family, kind, proto)
            with self._lock:  # abort() shuts this down, even while connecting
                self._handle = socket.socket(fileno=os.dup(plain.fileno()))
            try:
                if self._aborted.is_set():
                    raise _RefusedError("stopping")
                plain.settimeout(self._connect_timeout)
                plain.connect(address)
                break
            except OSError as exc:
                self._drop(plain)
                error = exc
        else:
            raise error
        sock: socket.socket = plain
        try:
            if self._context is not None:
                sock = self._context.wrap_socket(
                    plain, server_hostname=self._host, do_handshake_on_connect=False
                )
                sock.settimeout(self._connect_timeout)
                sock.do_handshake()
            self._sock = sock
            self._on_probation(sock)
        except BaseException:
            self._drop(sock)
            raise
        return sock

    def _on_probation(self, sock: socket.socket) -> None:
        """Wait `probation` seconds for a receiver that is about to refuse us."""
        deadline = time.monotonic() + self._probation
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return
            self._check_open(sock)

    def _check_open(self, sock: socket.socket) -> None:
        """Raise if the receiver has closed or reset the connection."""
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        finally:
            sock.settimeout(self._write_timeout)
        if not data:
            raise _RefusedError("the receiver closed the connection")

    def _await_ack(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self._ack_timeout
        pause = 0.001
        while True:
            raw = fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0")
            unacknowledged = struct.unpack("i", raw)[0]
            if unacknowledged == 0:
                return
            if self._aborted.is_set():
                raise _RefusedError("stopping")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{unacknowledged} bytes not acknowledged within {self._ack_timeout} s"
                )
            self._aborted.wait(pause)
            pause = min(pause * 2, 0.05)

    def _drop(self, sock: socket.socket | None = None) -> None:
        with self._lock:
            for item in (sock, self._sock, self._handle):
                if item is not None:
                    item.close()
            self._sock = self._handle = None

    def abort(self) -> None:
        self._aborted.set()
        with self._lock:
            if self._handle is not None:
                try:
                    self._handle.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        sock = self._sock
        if sock is not None and isinstance(sock, ssl.SSLSocket) and not self._aborted.is_set():
            try:  # a polite close_notify, so the receiver logs no error
                sock.settimeout(0.2)
                sock.unwrap()
            except (OSError, ssl.SSLError):
                pass
        self._drop()


def tls_context(
    ca_file: str | None, client_cert: str | None, client_key: str | None
) -> ssl.SSLContext:
    """A client context verifying the server (and its name) against
    `ca_file` (else the system CAs), with our certificate for mutual TLS."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"siem.ca_file {ca_file}: cannot load CA certificates ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"siem.client_cert {client_cert} / siem.client_key {client_key}: cannot load "
                f"the certificate and its key ({type(exc).__name__})"
            ) from None
    return context


def build_sink(siem: SiemSection, *, hostname: str | None = None) -> EventSink:
    """The sink `siem.transport` names. ConfigError for unusable files."""
    if siem.transport == "noop":
        return NoopSink()
    if siem.transport == "file" and siem.path:
        return FileSink(siem.path)
    if siem.transport == "https" and siem.endpoint:
        context = tls_context(siem.ca_file, siem.client_cert, siem.client_key)
        return HttpsSink(siem.endpoint, context=context)
    if siem.transport == "syslog" and siem.endpoint:
        tls = siem.endpoint.startswith("tls://")
        return SyslogSink(
            siem.endpoint,
            hostname=hostname or socket.gethostname(),
            context=tls_context(siem.ca_file, siem.client_cert, siem.client_key) if tls else None,
            fmt=siem.format,
        )
    raise ConfigError(f"siem.transport {siem.transport!r} lacks its siem.endpoint or siem.path")
