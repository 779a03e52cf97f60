"""`shimmfa keys` and `shimmfa integrity`: the shim's keys, and the signed
manifest of the installed software and config they seal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from shimmfa.cli.base import ConfigOption, command_group, load_settings

if TYPE_CHECKING:
    from shimmfa.shim.state.keys import ShimKeys

app = command_group("The shim's signing key and age identity.")
integrity_app = command_group("Seal the installed software and config for boot integrity.")


def _print_keys(keys: ShimKeys) -> None:
    typer.echo(f"signing key (Ed25519): {keys.public_key_text}")
    typer.echo(f"age recipient:         {keys.recipient}")


@app.command("init")
def keys_init(config: ConfigOption) -> None:
    """Create the shim's keys under `<storage.root>/keys/` (never overwrites)."""
    import time

    from shimmfa.shim.state.anchor import provision_keys

    settings = load_settings(config)
    keys, created = provision_keys(settings.storage_root, time.time())
    typer.echo(f"created: {', '.join(created)}" if created else "keys already exist; unchanged")
    _print_keys(keys)


@app.command("show")
def keys_show(config: ConfigOption) -> None:
    """Print the public signing key (`ed25519:<base64>`) and the age recipient."""
    from shimmfa.shim.state.keys import load_keys

    _print_keys(load_keys(load_settings(config).storage_root))


@integrity_app.command("seal")
def integrity_seal(config: ConfigOption) -> None:
    """Record (signed) the digests of the installed shimmfa and of the config,
    for the boot_integrity sensor. Run it after installing or upgrading."""
    import time

    from shimmfa.shim.state.anchor import provision_keys
    from shimmfa.shim.tamper.integrity import manifest_path, seal

    settings = load_settings(config)
    keys, _ = provision_keys(settings.storage_root, time.time())
    manifest = seal(settings.storage_root, keys, config, time.time())
    typer.echo(f"sealed {manifest_path(settings.storage_root)}")
    typer.echo(f"  software_sha256 {manifest['software_sha256']}")
    typer.echo(f"  config_sha256   {manifest['config_sha256']}")
