"""`shimmfa tamper`: the tamper latch's status and its authorised reset."""

from __future__ import annotations

from typing import Annotated

import typer

from shimmfa.cli.base import ConfigOption, command_group, load_settings, open_store

app = command_group("The tamper latch: status and authorised reset.")


@app.command("status")
def tamper_status(config: ConfigOption) -> None:
    """Show whether the tamper latch is set, why and since when. Exit 0 when
    clear, 1 when latched."""
    import datetime as dt

    from shimmfa.shim import admin

    settings = load_settings(config)
    check = admin.examine(settings)
    if not check.sound:  # the latch in a lost or replaced DB says nothing
        typer.echo(f"tamper latch: SET (tamper:state_lost): the state was {check.verdict}")
        typer.echo(f"  {check.why}; recover with `shimmfa state recover`")
        raise typer.Exit(1)
    latch = open_store(settings).latch()
    anchored = check.anchor.latch if check.anchor is not None else None
    if latch is None and anchored is not None:
        typer.echo(f"tamper latch: SET ({anchored}): {check.why}")
        raise typer.Exit(1)
    if latch is None:
        typer.echo("tamper latch: clear")
        return
    when = dt.datetime.fromtimestamp(latch.at, dt.UTC).isoformat(timespec="seconds")
    typer.echo(f"tamper latch: SET ({latch.reason}) since {when}")
    for key, value in sorted(latch.detail.items()):
        typer.echo(f"  {key}: {value}")
    raise typer.Exit(1)


@app.command("reset")
def tamper_reset(
    config: ConfigOption,
    operator: Annotated[str, typer.Option(help="An enrolled technician with role admin.")],
    code: Annotated[str, typer.Option(help="The operator's current TOTP code.")],
    reason: Annotated[str, typer.Option(help="What was inspected and why it is safe.")],
) -> None:
    """Clear the tamper latch after physical inspection. The operator's code
    is checked like a gate login (replay and lockout apply); audited."""
    from shimmfa.shim import admin

    if not reason.strip():
        raise typer.BadParameter("say what was inspected", param_hint="--reason")
    settings = load_settings(config)
    admin.reset(settings, open_store(settings), operator, code, reason.strip())
    typer.echo(f"tamper latch cleared by {operator}; the shim accepts logins again.")
