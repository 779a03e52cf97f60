"""`shimmfa breakglass`: the shim's emergency login, `breakglass <code>` at
the port, whose code only a quorum of clinical engineering AND information
security can release (the quorum oracle, `shimmfa quorum`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shimmfa.cli.base import ConfigOption, command_group, load_settings, open_store
from shimmfa.errors import QuorumError

if TYPE_CHECKING:
    from shimmfa.shim.settings import Settings

app = command_group(
    "Break-glass: an emergency login whose code only a quorum of clinical engineering "
    "and information security can release."
)


@app.command("provision")
def provision(
    config: ConfigOption,
    operator: Annotated[str, typer.Option(help="An enrolled technician with role admin.")],
    code: Annotated[str, typer.Option(help="The operator's current TOTP code.")],
    player: Annotated[
        list[str],
        typer.Option(
            "--player", "-p", help="clinical/NAME=age1... or infosec/NAME=age1...; repeat."
        ),
    ],
    group: Annotated[
        list[str],
        typer.Option(
            "--group", "-g", help="clinical:T and infosec:T, the Tocs each group must give."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the dealt Tocs (JSON, new file).")
    ],
    note: Annotated[str, typer.Option(help="Free text in every Toc.")] = "",
) -> None:
    """Make the shim's break-glass TOTP secret, keep it sealed in the state
    DB, and deal it as Tocs sealed to each holder's age key (OUTPUT: hand
    each holder theirs). A code needs T Tocs of clinical AND T of infosec.
    Provisioning again replaces the secret: the old Tocs open nothing. The
    operator's code is checked like a login; audited."""
    from shimmfa.core.totp import generate_totp_secret
    from shimmfa.quorum.dealing import deal_document, parse_group, parse_player
    from shimmfa.shim import admin
    from shimmfa.shim.reporting.breakglass_deal import ROLE_OF_GROUP

    settings = load_settings(config)
    players = [parse_player(spec) for spec in player]
    groups = [parse_group(spec) for spec in group]
    if sorted(name for name, _ in groups) != sorted(ROLE_OF_GROUP):  # the groups of every deal
        raise QuorumError(
            "a break-glass deal has exactly two groups, --group clinical:T and --group infosec:T"
        )
    if output.exists():
        raise QuorumError(f"{output} exists; remove it or choose another file")

    written = False

    def make() -> tuple[str, dict[str, object]]:
        nonlocal written
        secret = generate_totp_secret()
        document = deal_document(secret, players, groups=groups, note=note)
        _write_new(output, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        written = True
        record: dict[str, Any] = {
            "groups": document["groups"],
            "note": note,
            "holders": {p.full_name: p.recipient for p in players},
        }
        return secret, record

    try:
        replaced = admin.provision_breakglass(settings, operator, code, make)
    except BaseException:
        if written:
            output.unlink(missing_ok=True)  # Tocs of a secret that was not kept open nothing
        raise
    done = "replaced the previous one (its Tocs open nothing now)" if replaced else "made"
    typer.echo(f"break-glass secret {done}; {len(players)} Tocs in {output}")
    typer.echo("Hand each holder their Toc; `shimmfa breakglass status` shows the deal.")
    if settings.central.url is not None and not _register(settings):
        typer.echo(
            "warning: the deal is not registered with central yet, so central cannot take "
            "break-glass requests for this shim; run `shimmfa breakglass register` once "
            "central is reachable (the secret and the Tocs are kept).",
            err=True,
        )


def _register(settings: Settings) -> bool:
    """Register the deal with central, saying how it went; False if not."""
    from shimmfa.shim.reporting.breakglass_deal import register
    from shimmfa.shim.state.store import StateStore

    store = StateStore(settings.storage_root)
    try:
        done = register(settings, store)
    except (OSError, QuorumError) as exc:
        typer.echo(f"central: {exc}", err=True)
        return False
    finally:
        store.close()
    if done.status == 200:
        typer.echo(f"central: the deal was already registered ({done.deal_id})")
    elif done.replaced:
        typer.echo(f"central: deal registered ({done.deal_id}), replacing {done.replaced}")
    else:
        typer.echo(f"central: deal registered ({done.deal_id})")
    return True


@app.command("register")
def register_command(config: ConfigOption) -> None:
    """Register the provisioned deal's public record (groups, thresholds,
    holders and their age recipients; never a Toc or the secret) with the
    central service, so that its operators can request the break-glass
    code and the holders approve. `provision` does it when `central.url` is
    set; run this when central was unreachable then. Safe to repeat. Exit 1
    when central refuses it or cannot be reached."""
    settings = load_settings(config)
    if settings.central.url is None:
        raise QuorumError(
            "central.url is not set in the config: there is no central to register with"
        )
    if not _register(settings):
        raise typer.Exit(1)


def _write_new(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise QuorumError(f"{path}: cannot create ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


@app.command("status")
def status(config: ConfigOption) -> None:
    """Whether the shim has a break-glass secret, since when, by whom, and
    how it was dealt (never the secret). Exit 1 when it has none."""
    from shimmfa.core.events import iso_time
    from shimmfa.shim.state.breakglass import provisioned

    found = provisioned(open_store(load_settings(config)))
    if found is None:
        typer.echo("break-glass: not provisioned (`shimmfa breakglass provision`)")
        raise typer.Exit(1)
    typer.echo(f"break-glass: provisioned {iso_time(found.created_at)} by {found.created_by}")
    groups = found.deal.get("groups")
    holders = found.deal.get("holders")
    held = [str(h) for h in holders] if isinstance(holders, dict) else []
    for name, spec in groups.items() if isinstance(groups, dict) else []:
        if isinstance(spec, dict):
            names = [h for h in held if h.startswith(f"{name}/")]
            typer.echo(
                f"  {name}: {spec.get('threshold')} of {spec.get('size')} "
                f"(group {spec.get('group_id')}): {', '.join(names)}"
            )
