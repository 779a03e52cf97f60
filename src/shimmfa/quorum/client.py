"""An HTTP client of a farMFA-compatible oracle (ours, mounted anywhere, or
farMFA's own): what `shimmfa quorum open`, `approve`, `status` and `totp`
use.

Rules: the oracle's base URL may carry a path (the central service mounts
the oracle at `/quorum`, and wants an API token: `token` goes in an
`Authorization: Bearer` header); a session id is checked to be 16 base32
characters before it goes into a URL; secrets (the KEK, Tocs) travel only
in request bodies. An error answer becomes a `QuorumError` whose reason is
the oracle's `code` and whose message is the oracle's; a network failure
says which URL could not be reached.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from shimmfa.core.toc import Toc
from shimmfa.errors import QuorumError
from shimmfa.quorum.oracle import DEFAULT_TTL, valid_session_id

__all__ = ["OracleClient"]


class OracleClient:
    """`open_session`, `session`, `submit`, `release` against `url`."""

    def __init__(
        self,
        url: str,
        *,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise QuorumError(f"--url {url[:80]!r}: give the oracle's http:// or https:// URL")
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise QuorumError(f"--ca-file {ca_file}: {exc}") from None
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(
            verify=verify, timeout=timeout, transport=transport, headers=headers
        )

    def __enter__(self) -> OracleClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def open_session(self, toc_zero: Toc, ttl: int = DEFAULT_TTL) -> dict[str, Any]:
        """SessionCredentials: the session, its TEK and its KEK."""
        return self._call("POST", "/sessions", {"toc_zero": toc_zero.as_dict(), "ttl": ttl})

    def session(self, session_id: str) -> dict[str, Any]:
        return self._call("GET", f"/sessions/{_checked(session_id)}", None)

    def submit(self, session_id: str, encrypted_toc: str) -> None:
        body = {"encrypted_toc": encrypted_toc}
        self._call("POST", f"/sessions/{_checked(session_id)}/tocs", body)

    def release(self, session_id: str, kek: str) -> dict[str, Any]:
        """TOTPCode: {totp, totp_expires_at, session_expires_at}."""
        return self._call("POST", f"/sessions/{_checked(session_id)}/totp", {"kek": kek})

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            response = self._http.request(method, self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise QuorumError(
                f"cannot reach the oracle at {self.url}: {type(exc).__name__}: {exc}", "network"
            ) from None
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = None
        if response.is_success and isinstance(answer, dict):
            return answer
        if isinstance(answer, dict) and isinstance(answer.get("message"), str):
            code = str(answer.get("code") or response.status_code)
            raise QuorumError(
                f"the oracle refused ({response.status_code} {code}): {answer['message']}", code
            )
        raise QuorumError(
            f"the oracle at {self.url} answered {response.status_code} without a farMFA body",
            "http_error",
        )


def _checked(session_id: str) -> str:
    if not valid_session_id(session_id):
        raise QuorumError(
            f"--session {session_id[:40]!r}: a session id is 16 base32 characters (A-Z, 2-7)"
        )
    return session_id
