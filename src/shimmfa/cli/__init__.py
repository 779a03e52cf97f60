"""The `shimmfa` command line.

One module per command group (`technicians`, `keys` with `integrity`,
`recordings`, `tamper`, `state`, `central` with `central_admin`, `quorum`,
`breakglass`);
the root commands and `config` are here, and `base` holds what they share. Every
command imports what it needs lazily, so `shimmfa --help` is quick and the
groups never import each other. Errors are one line on stderr and a non-zero
exit code (the error's `exit_code`), never a traceback, unless `--debug` is
given.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from shimmfa.cli import breakglass, central, keys, quorum, recordings, state, tamper, technicians
from shimmfa.cli.base import MARKUP, ConfigOption, command_group, err
from shimmfa.errors import ShimMfaError

app = typer.Typer(
    rich_markup_mode=MARKUP,
    help="MFA gate for the RS-232 service port of legacy medical devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = command_group("Check a configuration file; print the reference.")
app.add_typer(technicians.app, name="technician")
app.add_typer(config_app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(recordings.app, name="recording")
app.add_typer(tamper.app, name="tamper")
app.add_typer(state.app, name="state")
app.add_typer(keys.integrity_app, name="integrity")
app.add_typer(central.app, name="central")
app.add_typer(quorum.app, name="quorum")
app.add_typer(breakglass.app, name="breakglass")

_debug = False


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command()
def run(
    config: ConfigOption,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run the shim daemon: gate the technician port, relay once authenticated."""
    from shimmfa.shim import daemon

    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise typer.BadParameter("choose DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    daemon.setup_logging(log_level)
    raise typer.Exit(daemon.run(config))


@app.command()
def devsim(
    path: Annotated[
        str | None, typer.Argument(help="Serial port or PTY the simulated device is on.")
    ] = None,
    fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    record: Annotated[
        Path | None,
        typer.Option(help="Append every byte the device receives to this file."),
    ] = None,
) -> None:
    """Simulate a legacy device's service console (login `service`, password `vip3200`)."""
    from shimmfa import devsim as sim

    if (path is None) == (fd is None):
        raise typer.BadParameter("give the device's PATH")
    try:
        port = fd if fd is not None else sim.open_port(str(path))
    except OSError as exc:
        raise ShimMfaError(f"{path}: {exc.strerror}") from None
    try:
        sim.serve(port, record=record)
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    check: Annotated[
        bool, typer.Option("--check", help="Run the demo unattended and print a PASS report.")
    ] = False,
    workdir: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the demo's config, state and logs here."),
    ] = None,
) -> None:
    """The whole system locally: the central service (HTTPS on 127.0.0.1), and
    the shim + a simulated device on PTYs with an enrolled demo technician,
    heartbeating to central, break-glass dealt and registered; attaches your
    terminal as the technician (Ctrl-] then h hangs up, Ctrl-] then q
    quits)."""
    from shimmfa import demo as demo_mod

    raise typer.Exit(demo_mod.main(check=check, workdir=workdir))


# -- configuration -------------------------------------------------------------


@config_app.command("check")
def config_check(config: Annotated[Path, typer.Argument(help="The YAML file to check.")]) -> None:
    """Validate a configuration file and print its warnings."""
    from shimmfa.shim.config import load_config

    loaded = load_config(config)
    for warning in loaded.warnings:
        err(f"warning: {warning}")
    typer.echo(f"{config}: OK (shim {loaded.settings.shim.id})")


@config_app.command("reference")
def config_reference() -> None:
    """Print every configuration key with its type, default and meaning."""
    from shimmfa.shim.config import reference_table

    typer.echo(reference_table())


def main() -> None:
    try:
        app()
    except ShimMfaError as exc:
        if _debug:
            raise
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err(line)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if _debug:
            raise
        err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        sys.exit(1)
