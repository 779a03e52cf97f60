"""`shimmfa central operator`: the people who log in to central (the web UI
and the API): clinical engineers, information security, auditors and
admins, each with a password (argon2id) and an authenticator (TOTP),
confirmed by one code before the operator exists, plus the further factors
their role needs (`SHIMMFA_CENTRAL_ADMIN_FACTORS`,
`SHIMMFA_CENTRAL_OPERATOR_FACTORS`). `central init --admin` makes the first
admin the same way. Audited as `cli:<user>`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shimmfa.cli import central_factors
from shimmfa.cli.base import command_group, console
from shimmfa.cli.central_admin import DEFAULT_URL, DatabaseUrl
from shimmfa.errors import CentralError

if TYPE_CHECKING:
    from shimmfa.central.context import Central

operator_app = command_group(
    "Operators: the people who log in to central (password, authenticator, further factors)."
)

PasswordFile = Annotated[
    Path | None,
    typer.Option(help="Read the password from this file (else it is asked, twice)."),
]
SecretFile = Annotated[
    Path | None,
    typer.Option(
        "--totp-secret-file",
        help="Use the TOTP secret in this file if it exists, else write the new one to it "
        "(mode 0600), instead of showing the otpauth URI and QR code.",
    ),
]
CodeOption = Annotated[
    str | None,
    typer.Option(help="The confirmation code from the authenticator (else it is asked)."),
]
FactorCodes = Annotated[
    list[str] | None,
    typer.Option(
        help="A confirmation code for each further factor the role needs, in their order "
        "(else each is asked). Their secrets go to --totp-secret-file's name plus "
        "'.<factor>'."
    ),
]


def create_confirmed(
    central: Central,
    operator_id: str,
    role: str,
    password_file: Path | None,
    secret_file: Path | None,
    code: str | None,
    factor_codes: list[str],
) -> None:
    """Create the operator, show (or write) its secret, and keep it only if
    one code confirms the authenticator, and one each further factor its
    role needs; otherwise nothing is left behind."""
    from sqlalchemy import delete

    from shimmfa.central.models import AuthStateRow, Operator
    from shimmfa.central.operators import DbAuthStateStore, create_operator
    from shimmfa.cli.central import actor, read_secret_file, write_private
    from shimmfa.core.totp import TechnicianRecord, TotpGate, provisioning_uri

    with central.sessions() as session:
        if session.get(Operator, operator_id) is not None:
            raise CentralError(f"operator {operator_id!r} exists already; nothing to do")
    if password_file is not None:
        password = read_secret_file(password_file, "password")
    else:
        password = typer.prompt(
            f"Password for {operator_id}", hide_input=True, confirmation_prompt=True
        )
    given = None
    if secret_file is not None and secret_file.exists() and secret_file.stat().st_size:
        given = read_secret_file(secret_file, "TOTP secret")
    operator, secret = create_operator(
        central, operator_id, role=role, password=password, totp_secret=given, actor=actor()
    )

    def undo() -> None:
        with central.sessions.begin() as session:
            session.execute(delete(Operator).where(Operator.operator_id == operator_id))
            session.execute(delete(AuthStateRow).where(AuthStateRow.key == operator_id))

    uri = provisioning_uri(operator_id, secret, issuer="ShimMFA central")
    if secret_file is not None:
        if given is None:
            write_private(secret_file, secret)
            typer.echo(f"TOTP secret written to {secret_file} (mode 0600)")
    else:
        import segno

        typer.echo(f"Add this to {operator_id}'s authenticator app:\n{uri}\n")
        segno.make(uri, error="m").terminal(compact=True)
    if code is None:
        code = typer.prompt("Code shown by the authenticator")
    gate = TotpGate(
        {operator_id: TechnicianRecord(operator_id, secret)},
        time_source=central.clock,
        window=central.settings.totp_window,
        store=DbAuthStateStore(central),
    )
    outcome = gate.authenticate(operator_id, code)
    if not outcome.authenticated:
        undo()
        raise CentralError(
            f"that code does not match ({outcome.result}); {operator_id!r} was not created: "
            "check the authenticator's clock and try again"
        )
    try:
        for index, factor_id in enumerate(central.settings.factors_for(role)):
            central_factors.enrol_and_confirm(
                central,
                operator_id,
                factor_id,
                secret_file=secret_file.with_name(f"{secret_file.name}.{factor_id}")
                if secret_file is not None
                else None,
                code=factor_codes[index] if index < len(factor_codes) else None,
            )
    except CentralError as exc:
        undo()
        raise CentralError(f"{exc}; {operator_id!r} was not created: try again") from None
    typer.echo(f"{role} {operator.operator_id!r} created and confirmed")


@operator_app.command("add")
def add(
    operator_id: Annotated[str, typer.Argument(help="The login ID, e.g. an e-mail address.")],
    role: Annotated[
        str, typer.Option("--role", help="admin, clinical_engineering, infosec or auditor.")
    ],
    password_file: PasswordFile = None,
    totp_secret_file: SecretFile = None,
    code: CodeOption = None,
    factor_code: FactorCodes = None,
    database_url: DatabaseUrl = DEFAULT_URL,
) -> None:
    """Add an operator: a password, then the otpauth URI and QR code for
    their authenticator, and one code to confirm it (then the same for each
    further factor their role needs). Nothing is kept unless every code
    matches. A break-glass holder's operator ID is the name the shim's deal
    gives them."""
    from shimmfa.cli.central import open_central

    central = open_central(database_url)
    try:
        create_confirmed(
            central, operator_id, role, password_file, totp_secret_file, code, factor_code or []
        )
    finally:
        central.close()


@operator_app.command("list")
def list_operators(database_url: DatabaseUrl = DEFAULT_URL) -> None:
    """Every operator: ID, role, since when, and whether disabled."""
    from rich.table import Table
    from sqlalchemy import select

    from shimmfa.central.models import Operator
    from shimmfa.cli.central import open_central
    from shimmfa.core.events import iso_time

    central = open_central(database_url)
    try:
        with central.sessions() as session:
            rows = session.scalars(select(Operator).order_by(Operator.operator_id)).all()
            table = Table("operator", "role", "created", "disabled")
            for row in rows:
                table.add_row(
                    row.operator_id, row.role, iso_time(row.created_at) or "", str(row.disabled)
                )
    finally:
        central.close()
    console().print(table)
