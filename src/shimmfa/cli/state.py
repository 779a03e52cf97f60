"""`shimmfa state`: is the shim's state DB the one its anchor names, and the
audited recovery after it was lost, replaced or rolled back."""

from __future__ import annotations

from typing import Annotated

import typer

from shimmfa.cli.base import ConfigOption, command_group, load_settings

app = command_group(
    "The shim's durable state: check it against its anchor; recover it after a loss."
)


@app.command("status")
def state_status(config: ConfigOption) -> None:
    """Say whether the state DB is the anchored one (exit 0) or was lost,
    replaced, rolled back or its anchor forged (exit 1), and, with `central:`,
    where the technician bundle and the recordings' uploads stand. Changes
    nothing."""
    import time

    from shimmfa.shim import admin

    settings = load_settings(config)
    check = admin.examine(settings)
    typer.echo(f"state: {check.verdict} ({check.why})")
    if check.anchor is not None:
        typer.echo(f"  anchored boot count: {check.anchor.boot_count}")
    for line in admin.sync_status(settings, time.time()):
        typer.echo(line)
    if not check.sound:
        typer.echo("  the port stays closed; recover with `shimmfa state recover`")
        raise typer.Exit(1)


@app.command("recover")
def state_recover(
    config: ConfigOption,
    operator: Annotated[
        str, typer.Option(help="An admin (roles: [admin]) in the config file or the state DB.")
    ],
    code: Annotated[str, typer.Option(help="The operator's current TOTP code.")],
    reason: Annotated[str, typer.Option(help="What happened to the state, and what was checked.")],
    without_central: Annotated[
        bool,
        typer.Option(
            "--without-central",
            help="Recover from the anchor alone when central cannot be reached "
            "(central will then show the shim as state_reset until an admin accepts it).",
        ),
    ] = False,
) -> None:
    """Start a new state generation after the state DB was lost, replaced or
    rolled back: a new state ID, the boot count above the anchor's, every
    technician's replay floor at the current time step, the `state_lost`
    latch cleared (any other latch kept). The operator's code is checked
    like a gate login; audited and sent to the SIEM. With `central:` configured
    the boot count also continues above the last one central accepted."""
    from shimmfa.shim import admin

    if not reason.strip():
        raise typer.BadParameter("say what happened and what was checked", param_hint="--reason")
    settings = load_settings(config)
    floor = 0
    if settings.central.url is not None and not without_central:
        from shimmfa.errors import ShimMfaError
        from shimmfa.shim.reporting.central import position

        try:
            last = position(settings.central)
        except OSError as exc:
            raise ShimMfaError(
                f"central ({settings.central.url}) cannot tell its last heartbeat of this shim "
                f"({exc}); try again, or recover with --without-central"
            ) from None
        floor = last[0] if last is not None else 0
    done = admin.recover(settings, operator, code, reason.strip(), boot_floor=floor)
    typer.echo(
        f"state recovered by {operator}: generation {done['generation']}, boot count above "
        f"{done['boot_floor']}, replay floors raised for {done['replay_floors']} technician(s)."
    )
    if done.get("latch_kept"):
        typer.echo(f"the tamper latch ({done['latch_kept']}) stays set: `shimmfa tamper reset`")
    else:
        typer.echo("the shim accepts logins again.")
