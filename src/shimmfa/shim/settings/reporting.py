"""Where the shim reports: the SIEM (`siem:`) and the central service
(`central:`)."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from shimmfa.core.bundle import pinned_key
from shimmfa.shim.settings.base import Section

__all__ = ["CentralSection", "SiemSection"]


class SiemSection(Section):
    transport: Annotated[
        Literal["noop", "file", "syslog", "https"],
        Field(description="Where events go: `noop`, `file` (JSON lines), `syslog`, `https`."),
    ] = "noop"
    endpoint: Annotated[
        str | None,
        Field(description="syslog: `tls://host:port` or `tcp://host:port`; https: the URL."),
    ] = None
    path: Annotated[str | None, Field(description="file: the JSON-lines file events go to.")] = None
    ca_file: Annotated[
        str | None, Field(description="CA certificates (PEM) the receiver must chain to.")
    ] = None
    client_cert: Annotated[
        str | None, Field(description="Client certificate (PEM) for mutual TLS.")
    ] = None
    client_key: Annotated[str | None, Field(description="Private key (PEM) of `client_cert`.")] = (
        None
    )
    format: Annotated[Literal["rfc5424", "cef"], Field(description="syslog message format.")] = (
        "rfc5424"
    )
    outbox_max: Annotated[
        int,
        Field(
            ge=100, le=10_000_000, description="Events the outbox holds before dropping heartbeats."
        ),
    ] = 100_000

    @model_validator(mode="after")
    def _consistent(self) -> SiemSection:
        if self.client_cert is not None and self.client_key is None:
            raise ValueError("siem.client_cert is set but siem.client_key is not; set both")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("siem.client_key is set but siem.client_cert is not; set both")
        if self.transport == "file" and not self.path:
            raise ValueError("siem.path is required when siem.transport is 'file'")
        if self.transport in ("syslog", "https"):
            if not self.endpoint:
                raise ValueError(
                    f"siem.endpoint is required when siem.transport is {self.transport!r}"
                )
            schemes = ("tls", "tcp") if self.transport == "syslog" else ("https",)
            try:
                url = urlsplit(self.endpoint)
                port = url.port
            except ValueError:
                raise ValueError("siem.endpoint is not a valid URL") from None
            if url.scheme not in schemes:
                wanted = " or ".join(f"{s}://" for s in schemes)
                raise ValueError(
                    f"siem.endpoint must start with {wanted} for transport {self.transport!r}"
                )
            if not url.hostname or (self.transport == "syslog" and port is None):
                raise ValueError("siem.endpoint needs a host and a port, e.g. tls://siem:6514")
            if url.username or url.password:
                raise ValueError("siem.endpoint must not carry a user name or password")
            if url.scheme == "tcp" and (self.ca_file or self.client_cert):
                raise ValueError(
                    "siem.ca_file and siem.client_cert need a tls:// endpoint, not tcp://"
                )
        return self


class CentralSection(Section):
    url: Annotated[
        str | None,
        Field(description="The central service, `https://host:port` (none: not used)."),
    ] = None
    token_file: Annotated[
        str | None,
        Field(description="File (0600) holding this shim's central credential."),
    ] = None
    ca_file: Annotated[
        str | None, Field(description="CA certificates (PEM) central's certificate chains to.")
    ] = None
    public_key: Annotated[
        str | None,
        Field(
            description="Central's bundle signing key, `ed25519:...` (`shimmfa central keys "
            "show`); pinned. Set: technicians are synced from central."
        ),
    ] = None
    sync_period: Annotated[
        float, Field(ge=1, le=86400, description="Seconds between technician bundle syncs.")
    ] = 300.0
    bundle_max_age: Annotated[
        float,
        Field(
            ge=60,
            le=366 * 86400,
            description="Seconds a bundle stays valid without a sync; then central's "
            "technicians are refused (default 7 days).",
        ),
    ] = 7 * 86400.0
    upload_recordings: Annotated[
        bool, Field(description="Upload each finished recording to central.")
    ] = True

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value is not None:
            pinned_key(value)  # ValueError names the expected form
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CentralSection:
        if self.url is None:
            if self.token_file or self.ca_file or self.public_key:
                raise ValueError(
                    "central.token_file, central.ca_file and central.public_key need central.url"
                )
            return self
        if self.bundle_max_age <= self.sync_period:
            raise ValueError(
                "central.bundle_max_age must be longer than central.sync_period, or every "
                "bundle expires before the next sync"
            )
        try:
            url = urlsplit(self.url)
            url.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError("central.url is not a valid URL") from None
        if url.scheme != "https" or not url.hostname:
            raise ValueError("central.url must be https://host[:port]")
        if url.username or url.password or url.query or url.fragment:
            raise ValueError("central.url must not carry a user, password, query or fragment")
        if not self.token_file:
            raise ValueError("central.token_file is required with central.url")
        return self
