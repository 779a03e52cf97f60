"""Small package trees on disk, for the tests of what hashes the installed
software (heartbeats, boot integrity)."""

from __future__ import annotations

from pathlib import Path


def small_package(tmp_path: Path) -> Path:
    """A two-file package under `tmp_path/pkg`."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text("X = 1\n")
    return package
