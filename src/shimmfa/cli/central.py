"""`shimmfa central`: set up and run the central service, and look at the
fleet (`init`, `serve`, `status`); `token` and `shim` are in
`central_admin`. Every command works on the database `--database-url`
names (or `SHIMMFA_CENTRAL_DATABASE_URL`; default a SQLite file in the
working directory)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shimmfa.cli import central_admin, central_factors, central_keys, central_operators
from shimmfa.cli.base import command_group, console, err
from shimmfa.cli.central_keys import DEFAULT_KEYS_DIR, KeysDir
from shimmfa.errors import CentralError, ConfigError

if TYPE_CHECKING:
    from shimmfa.central.context import Central

app = command_group(
    "The central service: registers shims, verifies their heartbeats and events, "
    "and reports a shim that goes silent."
)
app.add_typer(central_admin.token_app, name="token")
app.add_typer(central_admin.shim_app, name="shim")
app.add_typer(central_operators.operator_app, name="operator")
app.add_typer(central_factors.factor_app, name="factor")
app.add_typer(central_keys.keys_app, name="keys")

DEFAULT_URL = "sqlite:///./shimmfa-central.db"
DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="SHIMMFA_CENTRAL_DATABASE_URL",
        help="sqlite:///FILE (default, in the working directory) or "
        "postgresql+psycopg://USER@HOST/DB.",
        show_envvar=True,
    ),
]


def open_central(database_url: str, *, check: bool = True) -> Central:
    """The database, checked to be at the schema head unless `check=False`."""
    from shimmfa.central import schema
    from shimmfa.central.context import Central
    from shimmfa.central.settings import load_settings

    central = Central(load_settings(database_url=database_url))
    if check:
        schema.require_head(central.engine)
    return central


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def read_secret_file(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CentralError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if not text:
        raise CentralError(f"{path}: the {what} file is empty")
    return text


def write_private(path: Path, text: str) -> None:
    """`text` to a new file only its owner can read (0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CentralError(f"{path}: cannot write ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text + "\n")


@app.command("init")
def init(
    database_url: DatabaseUrl = DEFAULT_URL,
    admin: Annotated[
        str | None, typer.Option("--admin", help="ID of the first admin operator to create.")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help="Read the admin's password from this file (else it is asked)."),
    ] = None,
    totp_secret_file: Annotated[
        Path | None,
        typer.Option(
            help="For scripts and tests: take the admin's TOTP secret (base32) from this "
            "file if it exists, else write the new one to it (mode 0600), instead of "
            "showing the otpauth URI and QR code."
        ),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="The confirmation code from the authenticator (else it is asked)."),
    ] = None,
    factor_code: Annotated[
        list[str] | None,
        typer.Option(
            help="A confirmation code for each further factor admins need, in their order "
            "(else each is asked). Their secrets go to --totp-secret-file's name plus "
            "'.<factor>'."
        ),
    ] = None,
    keys_dir: KeysDir = DEFAULT_KEYS_DIR,
) -> None:
    """Create or upgrade the database schema and central's keys (`central
    keys`) and, with `--admin`, the first admin: shows the admin's otpauth
    URI and QR code and asks for one code to confirm the authenticator
    works; then the same for each further factor admins need
    (`SHIMMFA_CENTRAL_ADMIN_FACTORS`, default `second`)."""
    from shimmfa.central import schema
    from shimmfa.central.db import safe_url

    central_keys.init_and_report(keys_dir)
    central = open_central(database_url, check=False)
    try:
        schema.upgrade(central.engine)
        typer.echo(f"{safe_url(database_url)}: schema at {schema.head_revision()}")
        if admin is not None:
            central_operators.create_confirmed(
                central, admin, "admin", password_file, totp_secret_file, code, factor_code or []
            )
    finally:
        central.close()


@app.command("serve")
def serve(
    database_url: DatabaseUrl = DEFAULT_URL,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8443,
    workers: Annotated[
        int, typer.Option(help="Worker processes (use PostgreSQL for more than one).")
    ] = 1,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: serve HTTPS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key of --tls-cert.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    keys_dir: KeysDir = DEFAULT_KEYS_DIR,
    recordings_dir: Annotated[
        Path,
        typer.Option(
            envvar="SHIMMFA_CENTRAL_RECORDINGS_DIR",
            help="Where uploaded recordings are kept (0700).",
            show_envvar=True,
        ),
    ] = Path("central-recordings"),
) -> None:
    """Run the API (uvicorn). Refuses to start unless the schema is current
    (`shimmfa central init`). Other settings come from `SHIMMFA_CENTRAL_*`
    environment variables; these flags win over them."""
    import uvicorn

    from shimmfa.central import schema
    from shimmfa.central.settings import load_settings

    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    from shimmfa.central.keys import load_keys

    flags = {
        "database_url": database_url,
        "host": host,
        "port": port,
        "workers": workers,
        "keys_dir": keys_dir.absolute(),
        "recordings_dir": recordings_dir.absolute(),
    }
    if tls_cert is not None:
        flags.update(tls_cert=tls_cert, tls_key=tls_key)
    settings = load_settings(**flags)
    load_keys(settings.keys_dir)  # missing: ConfigError, exit 2; unsafe: KeyFileError
    central = open_central(settings.database_url, check=False)
    try:
        schema.require_head(central.engine)
        if workers > 1 and central.dialect == "sqlite":
            err("warning: several workers on SQLite take turns writing; use PostgreSQL to scale")
    finally:
        central.close()
    for name, value in settings.model_dump().items():  # the workers read the environment
        if value is not None:
            os.environ[f"SHIMMFA_CENTRAL_{name.upper()}"] = str(value)
    uvicorn.run(
        "shimmfa.central.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_level=log_level.lower(),
        access_log=False,
        server_header=False,
    )


@app.command("status")
def status(database_url: DatabaseUrl = DEFAULT_URL) -> None:
    """The fleet as a table: each shim's status, last heartbeat, position."""
    from rich.table import Table

    from shimmfa.central.registry import list_shims
    from shimmfa.core.events import iso_time

    central = open_central(database_url)
    table = Table("shim", "status", "location", "last heartbeat", "boot", "seq", "tamper")
    counts: dict[str, int] = {}
    try:
        after = None
        while page := list_shims(central, after=after, limit=500):
            for view in page:
                row = view.row
                seen = iso_time(row.last_seen_at) if row.last_seen_at is not None else "-"
                counts[view.status] = counts.get(view.status, 0) + 1
                table.add_row(
                    row.shim_id,
                    view.status,
                    row.location,
                    seen or "-",
                    str(row.boot_count or "-"),
                    str(row.seq or "-"),
                    row.hb_state or "-",
                )
            after = page[-1].row.shim_id
    finally:
        central.close()
    out = console()
    out.print(table)
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no shims"
    out.print(summary)
