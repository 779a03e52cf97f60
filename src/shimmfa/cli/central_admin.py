"""`shimmfa central token` and `shimmfa central shim`: API tokens and the
shim registry, straight on the database (audited as `cli:<user>`).
Tokens and shim credentials are printed once; `--credential-file` writes a
shim's to a 0600 file instead, for scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shimmfa.cli.base import command_group, console

token_app = command_group("Bearer API tokens for machines, scoped by role.")
shim_app = command_group("The shim registry: each shim's ID, public key and period.")

DEFAULT_URL = "sqlite:///./shimmfa-central.db"
DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="SHIMMFA_CENTRAL_DATABASE_URL",
        help="sqlite:///FILE or postgresql+psycopg://USER@HOST/DB.",
        show_envvar=True,
    ),
]


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name for the token (unique).")],
    role: Annotated[
        str, typer.Option("--role", help="admin, clinical_engineering, infosec or auditor.")
    ],
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from shimmfa.central.access import create_token
    from shimmfa.cli.central import actor, open_central

    central = open_central(database_url)
    try:
        _, token = create_token(central, name, role, actor=actor())
    finally:
        central.close()
    typer.echo(token)


@token_app.command("list")
def token_list(database_url: DatabaseUrl = DEFAULT_URL) -> None:
    """Every token's name, role, creation and revocation (never the token)."""
    from rich.table import Table

    from shimmfa.central.access import list_tokens
    from shimmfa.cli.central import open_central
    from shimmfa.core.events import iso_time

    central = open_central(database_url)
    try:
        tokens = list_tokens(central)
    finally:
        central.close()
    table = Table("name", "role", "created", "revoked")
    for row in tokens:
        revoked = iso_time(row.revoked_at) if row.revoked_at is not None else "-"
        table.add_row(row.name, row.role, iso_time(row.created_at) or "-", revoked or "-")
    console().print(table)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """Revoke a token: it stops working at once."""
    from shimmfa.central.access import revoke_token
    from shimmfa.cli.central import actor, open_central

    central = open_central(database_url)
    try:
        revoke_token(central, name, actor=actor())
    finally:
        central.close()
    typer.echo(f"token {name!r} revoked")


@shim_app.command("add")
def shim_add(
    shim_id: Annotated[str, typer.Argument(help="The shim's ID (its config's shim.id).")],
    public_key: Annotated[
        str, typer.Option(help="ed25519:<base64>, as `shimmfa keys show` prints it.")
    ],
    hardware_id: Annotated[str, typer.Option(help="The shim's hardware ID.")],
    location: Annotated[str, typer.Option(help="Where it is installed.")] = "",
    period: Annotated[float, typer.Option(help="Its heartbeat period in seconds.")] = 60.0,
    age_recipient: Annotated[
        str | None,
        typer.Option(
            help='age1..., the shim\'s "age recipient" (`shimmfa keys show`): technician '
            "bundles are encrypted to it."
        ),
    ] = None,
    credential_file: Annotated[
        Path | None,
        typer.Option(help="Write the shim's credential to this file (0600) instead of printing."),
    ] = None,
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """Register a shim; prints its bearer credential once (for its
    `central.token_file`)."""
    from shimmfa.central.problems import Invalid
    from shimmfa.central.registry import register_shim
    from shimmfa.cli.central import actor, open_central, write_private

    if "/" in shim_id:
        raise Invalid("shim_id must not contain '/'")
    central = open_central(database_url)
    try:
        _, credential = register_shim(
            central,
            shim_id=shim_id,
            hardware_id=hardware_id,
            public_key=public_key,
            location=location,
            heartbeat_period=period,
            actor=actor(),
            age_recipient=age_recipient,
        )
    finally:
        central.close()
    if credential_file is not None:
        write_private(credential_file, credential)
        typer.echo(f"shim {shim_id!r} registered; credential written to {credential_file}")
    else:
        typer.echo(credential)


@shim_app.command("list")
def shim_list(database_url: DatabaseUrl = DEFAULT_URL) -> None:
    """Registered shims with their status (`central status` shows more)."""
    from rich.table import Table

    from shimmfa.central.registry import list_shims
    from shimmfa.cli.central import open_central

    central = open_central(database_url)
    table = Table("shim", "hardware", "location", "period (s)", "status", "public key")
    try:
        after = None
        while page := list_shims(central, after=after, limit=500):
            for view in page:
                row = view.row
                table.add_row(
                    row.shim_id,
                    row.hardware_id,
                    row.location,
                    f"{row.heartbeat_period:g}",
                    view.status,
                    row.public_key,
                )
            after = page[-1].row.shim_id
    finally:
        central.close()
    console().print(table)


@shim_app.command("remove")
def shim_remove(
    shim_id: Annotated[str, typer.Argument(help="The shim to remove.")],
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """Remove a shim: its credential stops working at once."""
    from shimmfa.central.registry import remove_shim
    from shimmfa.cli.central import actor, open_central

    central = open_central(database_url)
    try:
        remove_shim(central, shim_id, actor=actor())
    finally:
        central.close()
    typer.echo(f"shim {shim_id!r} removed")
