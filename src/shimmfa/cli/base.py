"""What the command groups share: the `--config` option, loading the
settings and the state DB, and where output goes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from shimmfa.shim.settings import Settings
    from shimmfa.shim.state.store import StateStore

MARKUP: Final = "markdown"  # help text paragraphs are joined; `code` shows as code


def command_group(help_text: str) -> typer.Typer:
    """A `shimmfa <group>` sub-app, with the root's help formatting."""
    return typer.Typer(rich_markup_mode=MARKUP, help=help_text)


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The shim's YAML configuration file.")
]


def console() -> Console:
    """A rich console; when the output is not a terminal (a pipe, a file, a
    test) it is wide, so that IDs and reasons are never cut with an ellipsis."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=400, soft_wrap=True)


def err(message: str) -> None:
    typer.echo(f"shimmfa: {message}", err=True)


def load_settings(config: Path) -> Settings:
    from shimmfa.shim.config import load_config

    loaded = load_config(config)
    return loaded.settings


def open_store(settings: Settings) -> StateStore:
    from shimmfa.shim.state.store import StateStore

    settings.storage_root.mkdir(parents=True, exist_ok=True)
    return StateStore(settings.storage_root)
