"""Central's own keys, in one directory (`keys_dir`, mode 0700):

- `signing.pem`: Ed25519 (PKCS#8 PEM). Signs the technician bundles shims
  pull; shims pin its public key (`central.public_key`), shown as
  `ed25519:<base64 of the 32 raw bytes>`.
- `recording.agekey`: an age X25519 identity (age-keygen's text form).
  Shims encrypt each recording's data key to its recipient (`age1...`) as
  well as to the auditors' keys; central opens recordings with it, in
  memory only, for playback.
- `secrets.key`: 32 random bytes. Seals technicians' TOTP secrets at rest
  (ChaCha20-Poly1305, a random 96-bit nonce, the technician ID as
  associated data, so a sealed secret moved to another row does not open).

Rules:
- `central init` (or `central keys init`) creates missing files, each once
  (O_EXCL, 0600, fsync'ed) and never overwrites one; `serve` refuses to
  start without them (`load_keys`: ConfigError, exit 2).
- A key file or the directory readable or writable by group or others is
  refused (KeyFileError), as the shim does with its own keys.
- Nothing here logs or returns a private key; `CentralKeys` hides them from
  `repr`.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from pyrage import x25519

from shimmfa.errors import ConfigError, KeyFileError

__all__ = [
    "BUNDLE_CONTEXT",
    "FILES",
    "CentralKeys",
    "check_keys_present",
    "init_keys",
    "load_keys",
]

SIGNING_FILE = "signing.pem"
RECORDING_FILE = "recording.agekey"
SECRETS_FILE = "secrets.key"
FILES = (SIGNING_FILE, RECORDING_FILE, SECRETS_FILE)
BUNDLE_CONTEXT = b"shimmfa technician bundle v1\n"
NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class CentralKeys:
    """The loaded keys; see the module rules."""

    signing: Ed25519PrivateKey = field(repr=False)
    recording: x25519.Identity = field(repr=False)
    secrets_key: bytes = field(repr=False)
    directory: Path

    @property
    def public_key_raw(self) -> bytes:
        return self.signing.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_key_text(self) -> str:
        return "ed25519:" + base64.b64encode(self.public_key_raw).decode("ascii")

    @property
    def recording_recipient(self) -> str:
        return str(self.recording.to_public())

    def sign_bundle(self, bundle: str) -> str:
        """The standard base64 Ed25519 signature of an armored bundle."""
        signature = self.signing.sign(BUNDLE_CONTEXT + bundle.encode("ascii"))
        return base64.b64encode(signature).decode("ascii")

    def seal(self, technician_id: str, secret: str) -> bytes:
        """A TOTP secret sealed for the row of `technician_id`."""
        nonce = os.urandom(NONCE_BYTES)
        aead = ChaCha20Poly1305(self.secrets_key)
        return nonce + aead.encrypt(nonce, secret.encode("ascii"), technician_id.encode())

    def unseal(self, technician_id: str, sealed: bytes) -> str:
        """The secret `seal` sealed; KeyFileError if it does not open (another
        key, another technician's row, altered)."""
        aead = ChaCha20Poly1305(self.secrets_key)
        try:
            plain = aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], technician_id.encode())
        except (InvalidTag, ValueError):
            raise KeyFileError(
                f"the TOTP secret of technician {technician_id!r} does not open with "
                f"{self.directory / SECRETS_FILE}: wrong key file, or the row was altered"
            ) from None
        return plain.decode("ascii")


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        wanted = "700" if path.is_dir() else "600"
        raise KeyFileError(
            f"{path} is readable or writable by other users (mode {mode:o}); central refuses "
            f"to use it. Fix it with: chmod {wanted} {path}"
        )


def _create(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _new_content(name: str) -> bytes:
    if name == SIGNING_FILE:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    if name == RECORDING_FILE:
        identity = x25519.Identity.generate()
        return (
            f"# shimmfa central recording identity\n"
            f"# public key: {identity.to_public()}\n{identity}\n"
        ).encode("ascii")
    return os.urandom(32)


def init_keys(directory: Path) -> tuple[CentralKeys, list[str]]:
    """The keys in `directory`, creating the directory (0700) and any
    missing file; also the names of the files made now."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = []
        for name in FILES:
            path = directory / name
            if not path.exists():
                _create(path, _new_content(name))
                made.append(name)
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot create central's keys ({exc.strerror})") from None
    return load_keys(directory), made


def check_keys_present(directory: Path) -> None:
    """ConfigError (exit 2) naming what to run if a key file is missing."""
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise ConfigError(
            f"{directory}: central's keys are missing ({', '.join(missing)}): run "
            "`shimmfa central init` or `shimmfa central keys init` (SHIMMFA_CENTRAL_KEYS_DIR)"
        )


def load_keys(directory: Path) -> CentralKeys:
    check_keys_present(directory)
    _check_private(directory)
    for name in FILES:
        _check_private(directory / name)
    try:
        signing = serialization.load_pem_private_key(
            (directory / SIGNING_FILE).read_bytes(), password=None
        )
        lines = (directory / RECORDING_FILE).read_text(encoding="ascii").splitlines()
        secret_line = next(line for line in lines if line.startswith("AGE-SECRET-KEY-"))
        recording = x25519.Identity.from_str(secret_line.strip())
        secrets_key = (directory / SECRETS_FILE).read_bytes()
    except (OSError, ValueError, StopIteration, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{directory}: a key file is unreadable or malformed ({exc})") from None
    except Exception:  # pyrage's IdentityError
        raise KeyFileError(f"{directory / RECORDING_FILE}: not an age identity") from None
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyFileError(f"{directory / SIGNING_FILE}: not an Ed25519 private key")
    if len(secrets_key) != 32:
        raise KeyFileError(f"{directory / SECRETS_FILE}: must hold exactly 32 bytes")
    return CentralKeys(signing, recording, secrets_key, directory)
