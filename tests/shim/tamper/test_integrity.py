"""Boot integrity's digests (`shimmfa.shim.tamper.integrity`): the software
manifest is exactly coreutils `sha256sum` output (built with find, sort and
sha256sum, and checked with `sha256sum -c`), and its digest follows every
change to the installed tree but not bytecode."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shimmfa.shim.tamper.integrity import package_dir, software_digest, software_manifest
from trees import small_package


def manifest_tree(tmp_path: Path) -> Path:
    package = tmp_path / "tree"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "__init__.py").write_text("")
    (package / "b.py").write_text("B = 2\n")
    (package / "a.txt").write_bytes(bytes(range(256)))
    (package / "sub" / "mod.py").write_text("X = 1\n")
    (package / "sub" / "odd\nname.py").write_text("newline in the name\n")
    (package / "sub" / "back\\slash").write_text("backslash\n")
    (package / "sub" / "cr\rname").write_text("carriage return\n")
    (package / "sub" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00compiled")
    (package / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\x00compiled")
    (package / "stale.pyc").write_bytes(b"\x00compiled")
    return package


def coreutils_manifest(package: Path) -> bytes:
    """The manifest built with find, sort and sha256sum in the C locale."""
    script = (
        "find -L . -name __pycache__ -prune -o -type f ! -name '*.pyc' ! -name '*.pyo' "
        "-printf '%P\\0' | sort -z | xargs -0 sha256sum --"
    )
    return subprocess.run(
        ["sh", "-c", script],
        cwd=package,
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils sha256sum")
def test_the_manifest_is_sha256sum_output(tmp_path: Path) -> None:
    package = manifest_tree(tmp_path)
    manifest = software_manifest(package)
    assert manifest == coreutils_manifest(package)
    assert b"pyc" not in manifest
    assert len(manifest.splitlines()) == 7
    assert software_digest(package) == hashlib.sha256(manifest).hexdigest()
    (tmp_path / "MANIFEST").write_bytes(manifest)
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", str(tmp_path / "MANIFEST")],
        cwd=package,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_manifest_of_the_installed_package_is_sha256sum_output() -> None:
    assert software_manifest(package_dir()) == coreutils_manifest(package_dir())


def test_the_digest_follows_every_change_but_not_bytecode(tmp_path: Path) -> None:
    package = manifest_tree(tmp_path)
    digests = {software_digest(package)}

    (package / "sub" / "__pycache__" / "new.cpython-311.pyc").write_bytes(b"more")
    (package / "another.pyc").write_bytes(b"more")
    assert software_digest(package) in digests  # bytecode does not count

    changes = [
        lambda: (package / "b.py").write_text("B = 3\n"),
        lambda: (package / "sub" / "new.py").write_text(""),
        lambda: (package / "sub" / "new.py").rename(package / "sub" / "renamed.py"),
        lambda: (package / "a.txt").unlink(),
        lambda: (package / "sub" / "renamed.py").rename(package / "renamed.py"),
        lambda: (package / "empty.py").write_bytes(b""),
    ]
    for change in changes:
        change()
        digest = software_digest(package)
        assert digest not in digests
        digests.add(digest)


def test_a_symlinked_directory_is_followed_once(tmp_path: Path) -> None:
    package = small_package(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plugin.py").write_text("P = 1\n")
    (package / "plugins").symlink_to(outside)
    (outside / "loop").symlink_to(outside)
    manifest = software_manifest(package)
    assert b"  plugins/plugin.py\n" in manifest
    assert manifest.count(b"plugin.py") == 1
    before = software_digest(package)
    (outside / "plugin.py").write_text("P = 2\n")
    assert software_digest(package) != before


def test_a_missing_package_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        software_digest(tmp_path / "nowhere")
