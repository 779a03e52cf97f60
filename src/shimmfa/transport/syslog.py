"""The `syslog` sink: RFC 5424 (or CEF) over TCP or TLS, RFC 6587
octet-counting frames.

Rules:
- Events are taken when every byte is acknowledged by the receiver's TCP
  stack (the socket's unacknowledged-bytes count, ioctl SIOCOUTQ, is 0) and
  the connection is still open. A receiver that refuses us (e.g. rsyslog
  turning down a client certificate it does not trust) closes the
  connection right after the TLS handshake, so a new connection is on
  probation for `probation` seconds before anything is sent on it.
- Every network step has a timeout; `abort()` (from the stopping thread)
  shuts the socket down so a hung receiver releases the sender at once.
- Any error drops the connection; the events stay queued.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from shimmfa import __version__
from shimmfa.core.events import Event
from shimmfa.core.syslog import cef, octet_frame, rfc5424
from shimmfa.transport.sinks import error_text

__all__ = ["SyslogSink"]

log = logging.getLogger("shimmfa.sinks")

SIOCOUTQ = 0x5411  # Linux: bytes in a TCP socket's send queue not yet acknowledged


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
                log.warning("SIEM %s: %s; events stay in the outbox", self._where, error_text(exc))
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
