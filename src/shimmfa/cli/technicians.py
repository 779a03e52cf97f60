"""`shimmfa technician`: enrol and manage technicians in the state DB."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shimmfa.cli.base import ConfigOption, command_group, console, load_settings, open_store

app = command_group("Enrol and manage technicians in the state DB.")


def _show_uri(uri: str, qr: bool) -> None:
    if qr:
        import segno

        segno.make(uri, error="m").terminal(compact=True)
    typer.echo(uri)


@app.command("add")
def technician_add(
    technician_id: Annotated[str, typer.Argument(help="Login name, e.g. alice@example.org.")],
    config: ConfigOption,
    algorithm: Annotated[
        str | None, typer.Option(help="SHA1, SHA256 or SHA512 (default: totp.algorithm).")
    ] = None,
    digits: Annotated[int | None, typer.Option(help="6 or 8 (default: totp.digits).")] = None,
    period: Annotated[
        int | None, typer.Option(help="Seconds per code (default: totp.period).")
    ] = None,
    notes: Annotated[str, typer.Option(help="Free text kept with the enrolment.")] = "",
    role: Annotated[
        list[str] | None, typer.Option(help="`admin` may reset the tamper latch (repeatable).")
    ] = None,
    qr: Annotated[bool, typer.Option(help="Show the QR code in the terminal.")] = True,
    factor: Annotated[
        list[str] | None,
        typer.Option(
            help="A further factor for an MFA chain, by its label (repeatable): a new "
            "technician gets these after the first; an enrolled one gets them added."
        ),
    ] = None,
) -> None:
    """Enrol a technician with a new 160-bit secret; prints the QR code and URI
    to scan with an authenticator app. With `--factor LABEL`, also (or, for a
    technician already in the state DB, only) further factors, each with its
    own secret and QR code: the gate then asks for them after the login line
    (`Next factor: LABEL`)."""
    from shimmfa.shim.state import technicians

    if algorithm is not None and algorithm.upper() not in ("SHA1", "SHA256", "SHA512"):
        raise typer.BadParameter("choose SHA1, SHA256 or SHA512", param_hint="--algorithm")
    if digits is not None and digits not in (6, 8):
        raise typer.BadParameter("choose 6 or 8", param_hint="--digits")
    if period is not None and not 10 <= period <= 300:
        raise typer.BadParameter("choose 10 to 300 seconds", param_hint="--period")
    roles = tuple(dict.fromkeys(role or []))
    if any(r != "admin" for r in roles):
        raise typer.BadParameter("the only role is admin", param_hint="--role")
    settings = load_settings(config)
    store = open_store(settings)
    labels = list(dict.fromkeys(factor or []))
    record = store.technician(technician_id) if labels else None
    if record is None:
        record = technicians.enrol(
            settings,
            store,
            technician_id,
            algorithm=algorithm.upper() if algorithm else None,
            digits=digits,
            period=period,
            notes=notes,
            roles=roles,
        )
        typer.echo(f"Enrolled {record.technician_id}. Scan this with the technician's app:")
        _show_uri(technicians.uri_for(settings, record), qr)
    for label in labels:
        uri = technicians.enrol_factor(settings, store, technician_id, label)
        typer.echo(f"Factor {label!r} of {technician_id}. Scan this one too:")
        _show_uri(uri, qr)


@app.command("list")
def technician_list(config: ConfigOption) -> None:
    """List enrolled technicians, where they come from and their lockout state."""
    import time

    from rich.table import Table

    from shimmfa.shim.state import technicians

    settings = load_settings(config)
    table = Table("technician", "source", "TOTP", "enrolled", "status")
    now = time.time()
    for row in technicians.rows(settings, open_store(settings)):
        locked = row.locked_until > now
        status = f"locked {row.locked_until - now:.0f} s more" if locked else "ok"
        totp = f"{row.algorithm}/{row.digits}/{row.period}s"
        table.add_row(row.technician_id, row.source, totp, row.enrolment_date or "-", status)
    console().print(table)


@app.command("uri")
def technician_uri(
    technician_id: str,
    config: ConfigOption,
    qr: Annotated[bool, typer.Option(help="Show the QR code in the terminal.")] = True,
) -> None:
    """Show a technician's otpauth:// URI (and QR code) again."""
    from shimmfa.shim.state import technicians

    settings = load_settings(config)
    record = technicians.find(settings, open_store(settings), technician_id)
    _show_uri(technicians.uri_for(settings, record), qr)


@app.command("remove")
def technician_remove(technician_id: str, config: ConfigOption) -> None:
    """Remove a technician from the state DB (audited)."""
    from shimmfa.shim.state import technicians

    settings = load_settings(config)
    technicians.remove(open_store(settings), settings, technician_id)
    typer.echo(f"Removed {technician_id}.")


@app.command("unlock")
def technician_unlock(
    technician_id: str,
    config: ConfigOption,
    operator: Annotated[
        str, typer.Option(help="Who authorised the unlock (kept in the audit log).")
    ] = "",
) -> None:
    """Clear a technician's lockout (audited). The replay counter is kept."""
    from shimmfa.shim.state import technicians

    settings = load_settings(config)
    who = operator or os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"
    was = technicians.unlock(open_store(settings), settings, technician_id, who)
    typer.echo(f"{technician_id} {'unlocked' if was else 'was not locked'}.")
