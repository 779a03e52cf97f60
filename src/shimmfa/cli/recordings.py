"""`shimmfa recording`: verify, export, play and list session recordings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from shimmfa.cli.base import ConfigOption, command_group, console, err, load_settings
from shimmfa.core.recording import iso_utc

app = command_group("Verify, export, play and list session recordings.")

IdentityOption = Annotated[
    Path, typer.Option("--identity", "-i", help="age identity file that can open the data key.")
]


def _trusted(pubkey: str | None) -> bytes | None:
    from shimmfa.core.recording_reader import parse_public_key

    return parse_public_key(pubkey) if pubkey else None


@app.command("verify")
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

    from shimmfa.errors import RecordingError, WrongIdentityError
    from shimmfa.shim.recorder.files import verify_file

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
            when = iso_utc(verdict.last_good_time)
            message += f" at {when}"
        if trusted is None and verdict.status == "valid":
            message += f" (signed by {verdict.header['signing_key']}; pass --pubkey to pin it)"
        typer.echo(f"{path}: {message}")
        code = {"valid": 0, "tampered": 1, "truncated": 3}[verdict.status]
        worst = 1 if 1 in (worst, code) else max(worst, code)
    raise typer.Exit(worst)


@app.command("export")
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
    from shimmfa.shim.recorder import files as recordings

    if format not in ("jsonl", "asciicast", "raw"):
        raise typer.BadParameter("choose jsonl, asciicast or raw", param_hint="--format")
    if direction not in ("out", "in", "both"):
        raise typer.BadParameter("choose out, in or both", param_hint="--direction")
    recording = recordings.open_recording(file, identity, _trusted(pubkey))
    if recording.verdict.status != "valid":
        err(f"warning: {file}: {recording.verdict.message}")
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


@app.command("play")
def recording_play(
    file: Annotated[Path, typer.Argument(help="The recording (.shrec).")],
    identity: IdentityOption,
    speed: Annotated[float, typer.Option(help="Playback speed factor.")] = 1.0,
    max_idle: Annotated[float, typer.Option(help="Longest pause, seconds.")] = 2.0,
    pubkey: Annotated[str | None, typer.Option(help="Require this shim key.")] = None,
) -> None:
    """Replay what the technician saw, with its timing, in this terminal."""
    import time

    from shimmfa.shim.recorder import files as recordings

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    recording = recordings.open_recording(file, identity, _trusted(pubkey))
    recordings.play(recording, sys.stdout.buffer, speed, max_idle, time.sleep)
    if recording.verdict.status != "valid":
        err(f"warning: {recording.verdict.message}")


@app.command("list")
def recording_list(config: ConfigOption) -> None:
    """Table of the shim's recordings with their verification status."""
    import datetime as dt

    from rich.table import Table

    from shimmfa.shim.recorder import files as recordings
    from shimmfa.shim.state.keys import load_keys

    settings = load_settings(config)
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
    console().print(table)
    typer.echo(f"{len(files)} recording(s) in {settings.storage_root / 'sessions'}")
