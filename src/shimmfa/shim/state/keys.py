"""The shim's keys under `<storage.root>/keys/` (directory 0700, files 0600).

- `signing.pem`: Ed25519 private key (PKCS#8 PEM); signs recordings and,
  later, heartbeats. Shown as `ed25519:<base64 of the 32 raw bytes>`.
- `shim.agekey`: the shim's age X25519 identity (age-keygen text format).
- `recording.agekey` + `recording.recipient`: only when
  `recording.recipients` is empty: a local identity recordings are encrypted
  to. The secret half must be moved off the shim (a stolen shim must not read
  past sessions); the daemon warns for as long as it is there.
- Files are created once with O_EXCL and never overwritten. A key file or
  directory readable by group or others is refused: the shim will not start.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from shimmfa.errors import KeyFileError

SIGNING_FILE = "signing.pem"
IDENTITY_FILE = "shim.agekey"
RECORDING_IDENTITY_FILE = "recording.agekey"
RECORDING_RECIPIENT_FILE = "recording.recipient"


@dataclass(frozen=True)
class ShimKeys:
    signing: Ed25519PrivateKey
    identity: x25519.Identity
    directory: Path

    @property
    def public_key_raw(self) -> bytes:
        return self.signing.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_key_text(self) -> str:
        return "ed25519:" + base64.b64encode(self.public_key_raw).decode()

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())

    def sign(self, message: bytes) -> bytes:
        return self.signing.sign(message)


def keys_dir(storage_root: Path) -> Path:
    return Path(storage_root) / "keys"


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(
            f"{path} is readable or writable by other users (mode {stat.S_IMODE(mode):o}); "
            f"the shim refuses to start. Fix it with: chmod {'700' if path.is_dir() else '600'} "
            f"{path}"
        )


def _create(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _age_key_text(identity: x25519.Identity) -> bytes:
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return (f"# created: {created}\n# public key: {identity.to_public()}\n{identity}\n").encode()


def read_age_identity(path: Path) -> x25519.Identity:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read the age identity: {exc}") from None
    secrets = [line.strip() for line in lines if line.strip().startswith("AGE-SECRET-KEY-1")]
    if len(secrets) != 1:
        raise KeyFileError(f"{path}: expected one AGE-SECRET-KEY-1... line")
    try:
        return x25519.Identity.from_str(secrets[0])
    except Exception:
        raise KeyFileError(f"{path}: not a valid age X25519 identity") from None


def init_keys(storage_root: Path) -> tuple[ShimKeys, list[str]]:
    """Create any missing key and load them all. Returns the keys and the
    names of the files it created."""
    directory = keys_dir(storage_root)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = []
    signing_path = directory / SIGNING_FILE
    if not signing_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _create(signing_path, pem)
        created.append(SIGNING_FILE)
    identity_path = directory / IDENTITY_FILE
    if not identity_path.exists():
        _create(identity_path, _age_key_text(x25519.Identity.generate()))
        created.append(IDENTITY_FILE)
    return load_keys(storage_root), created


def load_keys(storage_root: Path) -> ShimKeys:
    directory = keys_dir(storage_root)
    signing_path = directory / SIGNING_FILE
    identity_path = directory / IDENTITY_FILE
    for path in (directory, signing_path, identity_path):
        if not path.exists():
            raise KeyFileError(f"{path} is missing; run `shimmfa keys init --config FILE`")
        _check_private(path)
    try:
        signing = serialization.load_pem_private_key(signing_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise KeyFileError(f"{signing_path}: not a readable PEM private key ({exc})") from None
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyFileError(f"{signing_path}: not an Ed25519 key")
    return ShimKeys(signing, read_age_identity(identity_path), directory)


def local_recording_recipient(storage_root: Path) -> tuple[str, bool]:
    """The recipient of the local recording identity, created on first use,
    and whether its secret half is still on the shim. The public half is kept
    in `recording.recipient`, so moving `recording.agekey` off the shim (as it
    should be) does not make the shim create another one."""
    directory = keys_dir(storage_root)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    public_path = directory / RECORDING_RECIPIENT_FILE
    secret_path = directory / RECORDING_IDENTITY_FILE
    if not public_path.exists():
        identity = x25519.Identity.generate()
        _create(secret_path, _age_key_text(identity))
        _create(public_path, f"{identity.to_public()}\n".encode())
    recipient = public_path.read_text(encoding="ascii").strip()
    parse_recipient(recipient)
    if secret_path.exists():
        _check_private(secret_path)
    return recipient, secret_path.exists()


def parse_recipient(text: str) -> x25519.Recipient:
    try:
        return x25519.Recipient.from_str(text)
    except Exception:
        raise KeyFileError(f"not an age X25519 recipient (age1...): {text!r}") from None
