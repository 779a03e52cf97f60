"""The `shimmfa` command line.

Every command imports what it needs lazily, so `shimmfa --help` is quick and
the apps never import each other. Errors are one line on stderr and a
non-zero exit code (the error's `exit_code`), never a traceback, unless
`--debug` is given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shimmfa.errors import ShimMfaError

if TYPE_CHECKING:
    from rich.console import Console

    from shimmfa.shim.config import Settings
    from shimmfa.shim.keys import ShimKeys
    from shimmfa.shim.state import StateStore

app = typer.Typer(
    help="MFA gate for the RS-232 service port of legacy medical devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
technician_app = typer.Typer(help="Enrol and manage technicians in the state DB.")
config_app = typer.Typer(help="Check a configuration file; print the reference.")
keys_app = typer.Typer(help="The shim's signing key and age identity.")
tamper_app = typer.Typer(help="The tamper latch: status and authorised reset.")
integrity_app = typer.Typer(help="Seal the installed software and config for boot integrity.")
recording_app = typer.Typer(help="Verify, export, play and list session recordings.")
app.add_typer(technician_app, name="technician")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(recording_app, name="recording")
app.add_typer(tamper_app, name="tamper")
app.add_typer(integrity_app, name="integrity")

_debug = False

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The shim's YAML configuration file.")
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


def _console() -> Console:
    """A rich console; when the output is not a terminal (a pipe, a file, a
    test) it is wide, so that IDs and reasons are never cut with an ellipsis."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=400, soft_wrap=True)


def _err(message: str) -> None:
    typer.echo(f"shimmfa: {message}", err=True)


def _load(config: Path) -> Settings:
    from shimmfa.shim.config import load_config

    loaded = load_config(config)
    return loaded.settings


def _store(settings: Settings) -> StateStore:
    from shimmfa.shim.state import StateStore

    settings.storage_root.mkdir(parents=True, exist_ok=True)
    return StateStore(settings.storage_root)


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
    """Shim + simulated device on PTYs with an enrolled demo technician; attaches
    your terminal as the technician (Ctrl-] quits)."""
    from shimmfa import demo as demo_mod

    raise typer.Exit(demo_mod.main(check=check, workdir=workdir))


# -- technicians ---------------------------------------------------------------


def _show_uri(uri: str, qr: bool) -> None:
    if qr:
        import segno

        segno.make(uri, error="m").terminal(compact=True)
    typer.echo(uri)


@technician_app.command("add")
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
) -> None:
    """Enrol a technician with a new 160-bit secret; prints the QR code and URI
    to scan with an authenticator app."""
    from shimmfa.shim import technicians

    if algorithm is not None and algorithm.upper() not in ("SHA1", "SHA256", "SHA512"):
        raise typer.BadParameter("choose SHA1, SHA256 or SHA512", param_hint="--algorithm")
    if digits is not None and digits not in (6, 8):
        raise typer.BadParameter("choose 6 or 8", param_hint="--digits")
    if period is not None and not 10 <= period <= 300:
        raise typer.BadParameter("choose 10 to 300 seconds", param_hint="--period")
    roles = tuple(dict.fromkeys(role or []))
    if any(r != "admin" for r in roles):
        raise typer.BadParameter("the only role is admin", param_hint="--role")
    settings = _load(config)
    store = _store(settings)
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


@technician_app.command("list")
def technician_list(config: ConfigOption) -> None:
    """List enrolled technicians, where they come from and their lockout state."""
    import time

    from rich.table import Table

    from shimmfa.shim import technicians

    settings = _load(config)
    table = Table("technician", "source", "TOTP", "enrolled", "status")
    now = time.time()
    for row in technicians.rows(settings, _store(settings)):
        locked = row.locked_until > now
        status = f"locked {row.locked_until - now:.0f} s more" if locked else "ok"
        totp = f"{row.algorithm}/{row.digits}/{row.period}s"
        table.add_row(row.technician_id, row.source, totp, row.enrolment_date or "-", status)
    _console().print(table)


@technician_app.command("uri")
def technician_uri(
    technician_id: str,
    config: ConfigOption,
    qr: Annotated[bool, typer.Option(help="Show the QR code in the terminal.")] = True,
) -> None:
    """Show a technician's otpauth:// URI (and QR code) again."""
    from shimmfa.shim import technicians

    settings = _load(config)
    record = technicians.find(settings, _store(settings), technician_id)
    _show_uri(technicians.uri_for(settings, record), qr)


@technician_app.command("remove")
def technician_remove(technician_id: str, config: ConfigOption) -> None:
    """Remove a technician from the state DB (audited)."""
    from shimmfa.shim import technicians

    settings = _load(config)
    technicians.remove(_store(settings), settings, technician_id)
    typer.echo(f"Removed {technician_id}.")


@technician_app.command("unlock")
def technician_unlock(
    technician_id: str,
    config: ConfigOption,
    operator: Annotated[
        str, typer.Option(help="Who authorised the unlock (kept in the audit log).")
    ] = "",
) -> None:
    """Clear a technician's lockout (audited). The replay counter is kept."""
    from shimmfa.shim import technicians

    settings = _load(config)
    who = operator or os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"
    was = technicians.unlock(_store(settings), settings, technician_id, who)
    typer.echo(f"{technician_id} {'unlocked' if was else 'was not locked'}.")


# -- keys ------------------------------------------------------------------------


def _print_keys(keys: ShimKeys) -> None:
    typer.echo(f"signing key (Ed25519): {keys.public_key_text}")
    typer.echo(f"age recipient:         {keys.recipient}")


@keys_app.command("init")
def keys_init(config: ConfigOption) -> None:
    """Create the shim's keys under <storage.root>/keys/ (never overwrites)."""
    from shimmfa.shim.keys import init_keys

    settings = _load(config)
    keys, created = init_keys(settings.storage_root)
    typer.echo(f"created: {', '.join(created)}" if created else "keys already exist; unchanged")
    _print_keys(keys)


@keys_app.command("show")
def keys_show(config: ConfigOption) -> None:
    """Print the public signing key (ed25519:<base64>) and the age recipient."""
    from shimmfa.shim.keys import load_keys

    _print_keys(load_keys(_load(config).storage_root))


# -- recordings ----------------------------------------------------------------

IdentityOption = Annotated[
    Path, typer.Option("--identity", "-i", help="age identity file that can open the data key.")
]


def _trusted(pubkey: str | None) -> bytes | None:
    from shimmfa.core.recording_reader import parse_public_key

    return parse_public_key(pubkey) if pubkey else None


@recording_app.command("verify")
def recording_verify(
    files: Annotated[list[Path], typer.Argument(help="Recording files (.shrec).")],
    pubkey: Annotated[
        str | None, typer.Option(help="The shim's key (ed25519:...) the recordings must carry.")
    ] = None,
    identity: Annotated[
        Path | None, typer.Option("--identity", "-i", help="Also decrypt every frame.")
    ] = None,
) -> None:
    """Check chain and signatures. Exit 0 all valid, 1 tampered (first bad
    frame named), 3 truncated (last good frame and time named)."""
    import datetime as dt

    from shimmfa.errors import RecordingError, WrongIdentityError
    from shimmfa.shim.recordings import verify_file

    trusted = _trusted(pubkey)
    worst = 0
    for path in files:
        try:
            verdict = verify_file(path, trusted, identity)
        except WrongIdentityError:
            raise
        except RecordingError as exc:
            typer.echo(f"{path}: tampered or not a recording: {exc}")
            worst = 1
            continue
        message = verdict.message
        if verdict.status == "truncated" and verdict.last_good_time:
            when = dt.datetime.fromtimestamp(verdict.last_good_time, dt.UTC).isoformat()
            message += f" at {when}"
        if trusted is None and verdict.status == "valid":
            message += f" (signed by {verdict.header['signing_key']}; pass --pubkey to pin it)"
        typer.echo(f"{path}: {message}")
        code = {"valid": 0, "tampered": 1, "truncated": 3}[verdict.status]
        worst = 1 if 1 in (worst, code) else max(worst, code)
    raise typer.Exit(worst)


@recording_app.command("export")
def recording_export(
    file: Annotated[Path, typer.Argument(help="The recording (.shrec).")],
    identity: IdentityOption,
    format: Annotated[
        str, typer.Option("--format", "-f", help="jsonl, asciicast or raw.")
    ] = "jsonl",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Default: stdout.")] = None,
    direction: Annotated[str, typer.Option(help="raw only: out, in or both.")] = "out",
    pubkey: Annotated[str | None, typer.Option(help="Require this shim key.")] = None,
) -> None:
    """Decrypt and export: jsonl (the seed's layout), asciicast v2, raw bytes."""
    from shimmfa.shim import recordings

    if format not in ("jsonl", "asciicast", "raw"):
        raise typer.BadParameter("choose jsonl, asciicast or raw", param_hint="--format")
    if direction not in ("out", "in", "both"):
        raise typer.BadParameter("choose out, in or both", param_hint="--direction")
    recording = recordings.open_recording(file, identity, _trusted(pubkey))
    if recording.verdict.status != "valid":
        _err(f"warning: {file}: {recording.verdict.message}")
    if format == "raw":
        chunks = recordings.raw_bytes(recording, direction)
    else:
        lines = (
            recordings.jsonl_lines(recording)
            if format == "jsonl"
            else recordings.asciicast_lines(recording)
        )
        chunks = (line.encode() + b"\n" for line in lines)
    if output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    else:
        with output.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)


@recording_app.command("play")
def recording_play(
    file: Annotated[Path, typer.Argument(help="The recording (.shrec).")],
    identity: IdentityOption,
    speed: Annotated[float, typer.Option(help="Playback speed factor.")] = 1.0,
    max_idle: Annotated[float, typer.Option(help="Longest pause, seconds.")] = 2.0,
    pubkey: Annotated[str | None, typer.Option(help="Require this shim key.")] = None,
) -> None:
    """Replay what the technician saw, with its timing, in this terminal."""
    import time

    from shimmfa.shim import recordings

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    recording = recordings.open_recording(file, identity, _trusted(pubkey))
    recordings.play(recording, sys.stdout.buffer, speed, max_idle, time.sleep)
    if recording.verdict.status != "valid":
        _err(f"warning: {recording.verdict.message}")


@recording_app.command("list")
def recording_list(config: ConfigOption) -> None:
    """Table of the shim's recordings with their verification status."""
    import datetime as dt

    from rich.table import Table

    from shimmfa.shim import recordings
    from shimmfa.shim.keys import load_keys

    settings = _load(config)
    trusted = load_keys(settings.storage_root).public_key_raw
    table = Table(
        "session", "technician", "start (UTC)", "duration", "in", "out", "reason", "status"
    )
    files = sorted((settings.storage_root / "sessions").glob("*.shrec"))
    for path in files:
        row = recordings.listing(path, trusted)
        start = dt.datetime.fromtimestamp(row.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            row.session_id,
            row.technician_id,
            start,
            f"{row.duration:.0f} s" if row.duration is not None else "?",
            str(row.bytes_in) if row.bytes_in is not None else "?",
            str(row.bytes_out) if row.bytes_out is not None else "?",
            row.reason,
            row.status,
        )
    _console().print(table)
    typer.echo(f"{len(files)} recording(s) in {settings.storage_root / 'sessions'}")


# -- tamper latch and integrity -----------------------------------------------------


@tamper_app.command("status")
def tamper_status(config: ConfigOption) -> None:
    """Show whether the tamper latch is set, why and since when. Exit 0 when
    clear, 1 when latched."""
    import datetime as dt

    settings = _load(config)
    latch = _store(settings).latch()
    if latch is None:
        typer.echo("tamper latch: clear")
        return
    when = dt.datetime.fromtimestamp(latch.at, dt.UTC).isoformat(timespec="seconds")
    typer.echo(f"tamper latch: SET ({latch.reason}) since {when}")
    for key, value in sorted(latch.detail.items()):
        typer.echo(f"  {key}: {value}")
    raise typer.Exit(1)


@tamper_app.command("reset")
def tamper_reset(
    config: ConfigOption,
    operator: Annotated[str, typer.Option(help="An enrolled technician with role admin.")],
    code: Annotated[str, typer.Option(help="The operator's current TOTP code.")],
    reason: Annotated[str, typer.Option(help="What was inspected and why it is safe.")],
) -> None:
    """Clear the tamper latch after physical inspection. The operator's code
    is checked like a gate login (replay and lockout apply); audited."""
    from shimmfa.shim import latch

    if not reason.strip():
        raise typer.BadParameter("say what was inspected", param_hint="--reason")
    settings = _load(config)
    latch.reset(settings, _store(settings), operator, code, reason.strip())
    typer.echo(f"tamper latch cleared by {operator}; the shim accepts logins again.")


@integrity_app.command("seal")
def integrity_seal(config: ConfigOption) -> None:
    """Record (signed) the digests of the installed shimmfa and of the config,
    for the boot_integrity sensor. Run it after installing or upgrading."""
    import time

    from shimmfa.shim.integrity import manifest_path, seal
    from shimmfa.shim.keys import init_keys

    settings = _load(config)
    keys, _ = init_keys(settings.storage_root)
    manifest = seal(settings.storage_root, keys, config, time.time())
    typer.echo(f"sealed {manifest_path(settings.storage_root)}")
    typer.echo(f"  software_sha256 {manifest['software_sha256']}")
    typer.echo(f"  config_sha256   {manifest['config_sha256']}")


# -- configuration -------------------------------------------------------------


@config_app.command("check")
def config_check(config: Annotated[Path, typer.Argument(help="The YAML file to check.")]) -> None:
    """Validate a configuration file and print its warnings."""
    from shimmfa.shim.config import load_config

    loaded = load_config(config)
    for warning in loaded.warnings:
        _err(f"warning: {warning}")
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
            _err(line)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if _debug:
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        sys.exit(1)
