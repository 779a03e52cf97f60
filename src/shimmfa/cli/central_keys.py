"""`shimmfa central keys init|show`: central's own keys (`central/keys.py`):
the Ed25519 key that signs technician bundles, the age identity that
recordings are encrypted to, and the key that seals technicians' TOTP
secrets. `central init` makes them too; `serve` refuses to start without
them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shimmfa.cli.base import command_group

keys_app = command_group("Central's keys: bundle signing, recording identity, secret sealing.")

KeysDir = Annotated[
    Path,
    typer.Option(
        "--keys-dir",
        envvar="SHIMMFA_CENTRAL_KEYS_DIR",
        help="Directory of central's keys (0700).",
        show_envvar=True,
    ),
]
DEFAULT_KEYS_DIR = Path("central-keys")


def init_and_report(directory: Path) -> None:
    """Create what is missing in `directory` and say what is there."""
    from shimmfa.central.keys import init_keys

    keys, made = init_keys(directory)
    if made:
        typer.echo(f"{directory}: created {', '.join(made)} (mode 0600)")
    else:
        typer.echo(f"{directory}: central's keys are there already")
    show_keys(keys.public_key_text, keys.recording_recipient)


def show_keys(public_key: str, recipient: str) -> None:
    typer.echo(f"signing key (Ed25519): {public_key}")
    typer.echo(f"recording recipient: {recipient}")


@keys_app.command("init")
def keys_init(keys_dir: KeysDir = DEFAULT_KEYS_DIR) -> None:
    """Create central's keys where they are missing (never overwrites one)."""
    init_and_report(keys_dir)


@keys_app.command("show")
def keys_show(keys_dir: KeysDir = DEFAULT_KEYS_DIR) -> None:
    """Print the public halves: the key shims pin (`central.public_key`) and
    the age recipient shims encrypt recordings to (`recording.recipients`)."""
    from shimmfa.central.keys import load_keys

    keys = load_keys(keys_dir)
    show_keys(keys.public_key_text, keys.recording_recipient)
