"""Strict modes, like sshd's: the daemon refuses to start when what guards
the port could be changed by someone else.

Rules:
- The storage root, `state/`, `keys/` and the config file must not be
  writable by group or others, and must belong to the daemon's user or root.
  Anything else is a `ConfigError` (one line, exit code 2) that names the
  path, its mode and the command that fixes it.
- Key files readable by anyone but their owner are refused where they are
  loaded (`keys`); the state DB is created 0600 (`db`).
- Paths that do not exist yet are not checked: the daemon creates them 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shimmfa.errors import ConfigError
from shimmfa.shim.state.db import db_path
from shimmfa.shim.state.keys import keys_dir

__all__ = ["check_strict_modes"]


def _check(path: Path, what: str) -> None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be checked ({exc.strerror})") from None
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o022:
        raise ConfigError(
            f"{what} {path} is writable by group or others (mode {mode:o}); the shim refuses "
            f"to start. Fix it with: chmod go-w {path}"
        )
    if status.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"{what} {path} belongs to user {status.st_uid}, not to the shim's user or root; "
            f"the shim refuses to start. Fix it with: chown {os.geteuid()} {path}"
        )


def check_strict_modes(storage_root: Path, config_path: Path) -> None:
    """Raise ConfigError unless the shim's files are the shim's alone."""
    _check(Path(config_path), "the config file")
    _check(Path(storage_root), "storage.root")
    _check(db_path(storage_root).parent, "the state directory")
    _check(keys_dir(storage_root), "the keys directory")
