"""Boot integrity: the installed software and the config, checked against a
manifest the shim signed at install (`shimmfa integrity seal`).

Rules:
- The manifest (`<storage.root>/keys/integrity.json`, mode 0600) holds the
  SHA-256 of the package files (`software_digest`) and of the config file,
  signed with the shim's Ed25519 key under a label of its own.
- `software_manifest` is `sha256sum` output for every file under the package
  directory, sorted by path, `__pycache__` and `*.pyc` left out; `cd
  <package dir> && sha256sum -c` checks it, and `software_digest` is its
  SHA-256. Names with `\\`, CR or LF are escaped the way GNU sha256sum does,
  so no two trees share a manifest.
- The `boot_integrity` sensor reports `boot_integrity_violated` when the
  manifest is missing, unsigned, signed by another key, or when either digest
  differs. It computes at its first poll and then every `recheck` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import shimmfa
from shimmfa.core.heartbeat import canonical
from shimmfa.shim.state.keys import ShimKeys, keys_dir
from shimmfa.shim.tamper.sensors import TamperEvent

MANIFEST_FILE = "integrity.json"
LABEL = b"shimmfa integrity manifest v1\n"
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_CHUNK = 1 << 16


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_line(relative: bytes, digest: str) -> bytes:
    if any(ch in relative for ch in b"\\\n\r"):
        escaped = relative.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + escaped + b"\n"
    return digest.encode() + b"  " + relative + b"\n"


def software_manifest(package_dir: Path) -> bytes:
    """`sha256sum` lines for every file under `package_dir` (symlinks
    followed, as `import` does), sorted by path bytes."""
    root = Path(package_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    entries: list[tuple[bytes, Path]] = []
    seen: set[tuple[int, int]] = set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in seen:  # a symlink loop
            subdirs.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        subdirs[:] = [name for name in subdirs if name not in _SKIPPED_DIRS]
        for name in files:
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            path = Path(directory, name)
            if path.is_file():
                entries.append((os.fsencode(path.relative_to(root)), path))
    entries.sort(key=lambda entry: entry[0])
    return b"".join(_manifest_line(relative, file_sha256(path)) for relative, path in entries)


def software_digest(package_dir: Path) -> str:
    """SHA-256 of `software_manifest(package_dir)`."""
    return hashlib.sha256(software_manifest(package_dir)).hexdigest()


def package_dir() -> Path:
    """The directory of the installed shimmfa package."""
    return Path(shimmfa.__file__).resolve().parent


def manifest_path(storage_root: Path) -> Path:
    return keys_dir(storage_root) / MANIFEST_FILE


def current_digests(config_path: Path, package: Path | None = None) -> dict[str, str]:
    return {
        "software_sha256": software_digest(package or package_dir()),
        "config_sha256": file_sha256(config_path),
    }


def seal(storage_root: Path, keys: ShimKeys, config_path: Path, now: float) -> dict[str, Any]:
    """Write a signed manifest of what is installed now; return it."""
    manifest = {
        **current_digests(config_path),
        "config_path": str(config_path.resolve()),
        "sealed_at": now,
        "signing_key": keys.public_key_text,
    }
    signature = keys.sign(LABEL + canonical(manifest))
    document = {"manifest": manifest, "sig": base64.b64encode(signature).decode()}
    target = manifest_path(storage_root)
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return manifest


def check(
    storage_root: Path, public_key: bytes, config_path: Path, package: Path | None = None
) -> str | None:
    """Why the installation does not match its sealed manifest, or None."""
    path = manifest_path(storage_root)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        manifest = document["manifest"]
        signature = base64.b64decode(document["sig"], validate=True)
    except FileNotFoundError:
        return f"no sealed manifest at {path}; run `shimmfa integrity seal`"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"the manifest {path} is unreadable ({type(exc).__name__})"
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, LABEL + canonical(manifest)
        )
    except (InvalidSignature, ValueError, TypeError):
        return "the manifest's signature does not verify with this shim's key"
    try:
        actual = current_digests(config_path, package)
    except OSError as exc:
        return f"cannot hash the installation: {exc}"
    for name, digest in actual.items():
        if manifest.get(name) != digest:
            return f"{name} differs from the sealed manifest"
    return None


class BootIntegritySensor:
    name = "boot_integrity"

    def __init__(
        self,
        storage_root: Path,
        public_key: bytes,
        config_path: Path,
        *,
        recheck: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        package: Path | None = None,
    ) -> None:
        self._args = (storage_root, public_key, config_path, package)
        self._recheck = recheck
        self._monotonic = monotonic
        self._next = 0.0
        self.problem: str | None = None

    def poll(self) -> TamperEvent | None:
        now = self._monotonic()
        if now >= self._next:
            self._next = now + self._recheck
            self.problem = check(*self._args)
        return TamperEvent.BOOT_INTEGRITY_VIOLATED if self.problem else None
