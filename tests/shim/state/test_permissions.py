"""Strict modes (`shimmfa.shim.state.permissions`) and the state DB's own
mode: what others could change is refused with the command that fixes it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shimmfa.errors import ConfigError
from shimmfa.shim.state.db import db_path
from shimmfa.shim.state.permissions import check_strict_modes
from shimmfa.shim.state.store import StateStore


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "storage"
    for path in (root, root / "state", root / "keys"):
        path.mkdir(mode=0o700)
        path.chmod(0o700)
    config = tmp_path / "shim.yaml"
    config.write_text("shim: {id: x}\n")
    config.chmod(0o644)
    return root, config


def test_private_files_pass(layout: tuple[Path, Path]) -> None:
    check_strict_modes(*layout)


def test_paths_not_made_yet_pass(tmp_path: Path) -> None:
    config = tmp_path / "shim.yaml"
    config.write_text("")
    config.chmod(0o600)
    check_strict_modes(tmp_path / "not-yet", config)


@pytest.mark.parametrize(
    ("which", "mode", "named"),
    [
        ("root", 0o777, "storage.root"),
        ("root", 0o770, "storage.root"),
        ("state", 0o702, "the state directory"),
        ("keys", 0o720, "the keys directory"),
        ("config", 0o666, "the config file"),
        ("config", 0o664, "the config file"),
    ],
)
def test_what_group_or_others_can_write_is_refused(
    layout: tuple[Path, Path], which: str, mode: int, named: str
) -> None:
    root, config = layout
    path = {"root": root, "state": root / "state", "keys": root / "keys", "config": config}[which]
    path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        check_strict_modes(root, config)
    message = str(caught.value)
    assert message.startswith(f"{named} {path} is writable by group or others (mode {mode:o})")
    assert message.endswith(f"Fix it with: chmod go-w {path}")
    assert "\n" not in message and caught.value.exit_code == 2


def test_the_state_db_is_the_shims_alone(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        StateStore(tmp_path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(db_path(tmp_path).stat().st_mode) == 0o600
    db_path(tmp_path).chmod(0o644)  # loosened behind the shim's back
    StateStore(tmp_path).close()
    assert stat.S_IMODE(db_path(tmp_path).stat().st_mode) == 0o600
