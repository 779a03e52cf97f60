"""The central service as a destination of the shim's events (`central:`).

Rules:
- Events (heartbeats among them, in their signed wire form) are POSTed to
  `<central.url>/api/v1/events` exactly as the `https` SIEM transport posts
  them, with the shim's own credential as a bearer token; any 2xx means
  taken. Central's certificate must chain to `central.ca_file` (else the
  system CAs) and name its host.
- The credential is read from `central.token_file`, which must be the
  shim's alone (no access for group or others), like a key file. It never
  appears in a log line, an error or a URL.
- `position()` asks central for the last `(boot_count, seq)` it accepted
  from this shim (`shimmfa state recover` continues above it).
- `CentralClient` is the shim's client for its own resources at central
  (`/api/v1/shims/{id}/...`: its technician bundle, its recordings' upload):
  one connection pool, the same credential and TLS rules, every request
  with a timeout; a transport failure or an answer that is not JSON is an
  OSError, any HTTP status an `Answer`.
"""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from shimmfa import __version__
from shimmfa.errors import ConfigError
from shimmfa.shim.settings import CentralSection
from shimmfa.transport.build import tls_context
from shimmfa.transport.sinks import HttpsSink

__all__ = [
    "EVENTS_PATH",
    "Answer",
    "CentralClient",
    "Requester",
    "central_sink",
    "position",
    "read_credential",
]

EVENTS_PATH = "/api/v1/events"
POSITION_PATH = "/api/v1/position"


def read_credential(path: str | Path) -> str:
    """The shim's central credential; ConfigError (exit 2) for a file that
    is missing, empty, or open to group or others."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"central.token_file {path}: cannot be read ({exc})") from None
    if mode & 0o077:
        raise ConfigError(
            f"central.token_file {path} is open to group or others (mode {mode:o}); "
            f"the shim refuses to start. Fix it with: chmod 600 {path}"
        )
    if not text or any(ch.isspace() for ch in text):
        raise ConfigError(f"central.token_file {path} does not hold one credential")
    return text


def _base(central: CentralSection) -> str:
    if central.url is None or central.token_file is None:
        raise ConfigError("central.url is not set")
    return central.url.rstrip("/")


def central_sink(central: CentralSection) -> HttpsSink:
    """The sink that delivers the outbox's `central` queue."""
    token = read_credential(central.token_file or "")
    return HttpsSink(
        _base(central) + EVENTS_PATH,
        context=tls_context(central.ca_file, None, None, section="central"),
        headers={"Authorization": f"Bearer {token}"},
    )


def position(central: CentralSection, timeout: float = 10.0) -> tuple[int, int] | None:
    """Central's last accepted `(boot_count, seq)` of this shim, None when it
    has accepted none. Raises OSError when central cannot be asked."""
    token = read_credential(central.token_file or "")
    context = tls_context(central.ca_file, None, None, section="central")
    request = urllib.request.Request(  # noqa: S310 - central.url is checked to be https
        _base(central) + POSITION_PATH,
        headers={"Authorization": f"Bearer {token}", "User-Agent": f"shimmfa/{__version__}"},
    )
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise OSError(f"central answered HTTP {exc.code}") from None
    except ValueError:
        raise OSError("central's answer is not JSON") from None
    boot, seq = answer.get("boot_count"), answer.get("seq")
    if boot is None:
        return None
    if not isinstance(boot, int) or not isinstance(seq, int):
        raise OSError("central's answer has no (boot_count, seq)")
    return boot, seq


@dataclass(frozen=True, slots=True)
class Answer:
    """Central's answer: the HTTP status and the JSON body (an error's
    `code` and `message` when it is one)."""

    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("code", ""))

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))[:300]

    def describe(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.message}".rstrip(": ")


class Requester(Protocol):
    """What the syncer and the uploader need of central (`CentralClient`)."""

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, int] | None = None,
        content: bytes | None = None,
    ) -> Answer: ...


class CentralClient:
    """Requests to `/api/v1/shims/<shim_id>/...` as the shim (module rules)."""

    def __init__(self, central: CentralSection, shim_id: str, *, timeout: float = 30.0) -> None:
        token = read_credential(central.token_file or "")
        self.url = _base(central)
        self.prefix = f"/api/v1/shims/{quote(shim_id, safe='')}"
        self._client = httpx.Client(
            base_url=self.url,
            verify=tls_context(central.ca_file, None, None, section="central"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"shimmfa/{__version__}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, int] | None = None,
        content: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> Answer:
        """`method` on `<prefix><path>`; OSError if central cannot be asked."""
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            response = self._client.request(
                method, self.prefix + path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise OSError(
                f"central {self.url} cannot be reached: {type(exc).__name__}: {exc}"[:300]
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise OSError(f"central answered HTTP {response.status_code}, not JSON") from None
        return Answer(response.status_code, body if isinstance(body, dict) else {})

    def close(self) -> None:
        self._client.close()
