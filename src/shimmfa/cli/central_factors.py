"""`shimmfa central factor`: operators' further TOTP factors (their MFA
chain at login, `SHIMMFA_CENTRAL_ADMIN_FACTORS` / `..._OPERATOR_FACTORS`),
straight on the database. Run on the central server, so no
re-authentication: whoever has this shell has the database. Audited as
`cli:<user>`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shimmfa.cli.base import command_group, console
from shimmfa.cli.central_admin import DEFAULT_URL, DatabaseUrl
from shimmfa.errors import CentralError

if TYPE_CHECKING:
    from shimmfa.central.context import Central

factor_app = command_group("Operators' further TOTP factors: their MFA chain at login.")

SecretFile = Annotated[
    Path | None,
    typer.Option(
        help="For scripts and tests: take the factor's TOTP secret (base32) from this file if "
        "it exists, else write the new one to it (mode 0600), instead of showing the "
        "otpauth URI and QR code."
    ),
]


def enrol_and_confirm(
    central: Central,
    operator_id: str,
    factor_id: str,
    *,
    label: str | None = None,
    secret_file: Path | None = None,
    code: str | None = None,
) -> None:
    """Enrol `factor_id` of `operator_id`, show it (or write it to
    `secret_file`), and confirm it with one code (asked unless given)."""
    from shimmfa.central.access import Principal
    from shimmfa.central.factors import confirm_factor, enrol_factor
    from shimmfa.central.operators import TotpLogin
    from shimmfa.central.problems import Invalid
    from shimmfa.cli.central import actor, read_secret_file, write_private

    caller = Principal("operator", actor(), "admin")
    given = None
    if secret_file is not None and secret_file.exists() and secret_file.stat().st_size:
        given = read_secret_file(secret_file, "TOTP secret")
    enrolment = enrol_factor(
        central,
        TotpLogin(central),
        caller,
        operator_id,
        factor_id,
        label=label,
        secret=given,
        trusted=True,
    )
    if secret_file is not None:
        if given is None:
            write_private(secret_file, enrolment.secret)
            typer.echo(f"{factor_id}: TOTP secret written to {secret_file} (mode 0600)")
    else:
        import segno

        typer.echo(f"Add factor {factor_id!r} of {operator_id} to an authenticator app:")
        typer.echo(f"{enrolment.uri}\n")
        segno.make(enrolment.uri, error="m").terminal(compact=True)
    if code is None:
        code = typer.prompt(f"Code shown for {enrolment.label}")
    try:
        confirm_factor(central, caller, operator_id, factor_id, code)
    except Invalid:
        raise CentralError(
            f"that code does not match factor {factor_id!r}; it stays pending (not used at "
            "login): check the authenticator's clock and enrol it again"
        ) from None
    typer.echo(f"factor {factor_id!r} of {operator_id!r} confirmed")


@factor_app.command("enrol")
def factor_enrol(
    operator_id: Annotated[str, typer.Argument(help="The operator's ID.")],
    factor_id: Annotated[str, typer.Argument(help="The factor's ID, e.g. second.")],
    label: Annotated[
        str | None, typer.Option(help="What the login asks for (default the ID).")
    ] = None,
    secret_file: SecretFile = None,
    code: Annotated[
        str | None, typer.Option(help="The confirmation code (else it is asked).")
    ] = None,
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """Enrol (or replace) a factor: shows its otpauth URI and QR code and asks
    for one code; until that code matches, a confirmed factor it replaces
    keeps working."""
    from shimmfa.cli.central import open_central

    central = open_central(database_url)
    try:
        enrol_and_confirm(
            central, operator_id, factor_id, label=label, secret_file=secret_file, code=code
        )
    finally:
        central.close()


@factor_app.command("list")
def factor_list(
    operator_id: Annotated[str, typer.Argument(help="The operator's ID.")],
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """An operator's factors and whether each is confirmed (never a secret)."""
    from rich.table import Table

    from shimmfa.central.access import Principal
    from shimmfa.central.factors import list_factors
    from shimmfa.cli.central import actor, open_central
    from shimmfa.core.events import iso_time

    central = open_central(database_url)
    try:
        views = list_factors(central, Principal("operator", actor(), "admin"), operator_id)
    finally:
        central.close()
    table = Table("factor", "label", "confirmed", "pending", "enrolled")
    for view in views:
        table.add_row(
            view.factor_id,
            view.label,
            iso_time(view.confirmed_at) if view.confirmed_at else "no",
            "yes" if view.pending else "",
            iso_time(view.created_at),
        )
    console().print(table)
    if not views:
        typer.echo(f"{operator_id} has no further factor")
