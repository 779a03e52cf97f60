"""Where events are delivered: `noop`, `file`, `https` here, `syslog` in
`transport.syslog` (the shim's `siem.transport`; the central service
forwards its alarms the same way). `build_sink` (`transport.build`) makes
the configured one.

Rules:
- A sink's `deliver(events)` returns how many of the first events the
  receiver has taken; the queue forgets exactly those. "Taken" means:
  `file` - written and fsynced; `https` - a 2xx answer to the POST;
  `syslog` - every byte acknowledged by the receiver's TCP stack.
- Every network step has a timeout; `abort()` (from the stopping thread)
  makes a blocked `deliver` return soon.
- Any error drops the connection; the events stay queued and are sent
  again later. Logs name the receiver as scheme://host:port only, never a
  path's secret parts or a credential.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shimmfa import __version__
from shimmfa.core.events import Event, to_json

__all__ = ["FileSink", "HttpsSink", "NoopSink", "error_text"]

log = logging.getLogger("shimmfa.sinks")


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
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._url = url
        self._headers = dict(headers or {})  # e.g. a bearer credential: never logged
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
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"shimmfa/{__version__}",
                **self._headers,
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError, http.client.HTTPException) as exc:
            log.warning("SIEM %s: %s; events stay in the outbox", self._where, error_text(exc))
            return 0
        if 200 <= status < 300:
            return len(events)
        log.warning("SIEM %s answered HTTP %d; events stay in the outbox", self._where, status)
        return 0

    def abort(self) -> None:
        pass  # urllib cannot be interrupted; every request has a timeout

    def close(self) -> None:
        pass


def error_text(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    return f"{type(exc).__name__}: {exc}"
