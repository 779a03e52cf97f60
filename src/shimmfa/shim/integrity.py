"""Boot integrity: the installed software and the config, checked against a
manifest the shim signed at install (`shimmfa integrity seal`).

Rules:
- The manifest (`<storage.root>/keys/integrity.json`, mode 0600) holds the
  SHA-256 of the package files (the `sha256sum`-style manifest of
  `shim/heartbeats.software_manifest`) and of the config file, signed with
  the shim's Ed25519 key under a label of its own.
- The `boot_integrity` sensor reports `boot_integrity_violated` when the
  manifest is missing, unsigned, signed by another key, or when either digest
  differs. It computes at its first poll and then every `recheck` seconds.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shimmfa.core.heartbeat import canonical
from shimmfa.shim.heartbeats import file_sha256, package_dir, software_digest
from shimmfa.shim.keys import ShimKeys, keys_dir
from shimmfa.shim.tamper import TamperEvent

MANIFEST_FILE = "integrity.json"
LABEL = b"shimmfa integrity manifest v1\n"


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
