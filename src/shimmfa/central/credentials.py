"""Credentials: bearer tokens (API tokens, shim credentials, web sessions),
passwords and public keys.

Rules:
- A token is 32 bytes from `secrets`, URL-safe base64 behind a prefix that
  says what it is (`smt_` an API token, `sms_` a shim's credential); it is
  shown once and stored as its SHA-256 (hex). SHA-256 is enough for a
  256-bit random secret; a slow hash is for passwords.
- Stored hashes are compared with `hmac.compare_digest`, or looked up by
  equality of the hash (an index lookup does not leak the token).
- Passwords are argon2id (argon2-cffi's defaults). `check_password` never
  raises for any input; `check_dummy` spends the same time for an unknown
  operator so the reply does not tell who exists.
- Public keys are `ed25519:<base64 of the 32 raw bytes>`, as `shimmfa keys
  show` prints them; a shim's age recipient is `age1...` (X25519), as it
  prints "age recipient".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pyrage import x25519

__all__ = [
    "API_TOKEN_PREFIX",
    "SHIM_CREDENTIAL_PREFIX",
    "check_dummy",
    "check_password",
    "hash_password",
    "check_age_recipient",
    "new_token",
    "parse_public_key",
    "same_hash",
    "token_hash",
]

API_TOKEN_PREFIX = "smt_"  # noqa: S105 - a prefix, not a secret
SHIM_CREDENTIAL_PREFIX = "sms_"  # noqa: S105 - a prefix, not a secret
SESSION_PREFIX = "smw_"  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_CHARS = 128
MAX_PASSWORD_CHARS = 1024
_KEY_PREFIX = "ed25519:"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's current parameters


def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password is 1 to {MAX_PASSWORD_CHARS} characters")
    return _hasher().hash(password)


def check_password(stored: str, password: object) -> bool:
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        password = ""
    try:
        return _hasher().verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def check_dummy(password: object) -> None:
    """Spend what `check_password` spends, for an operator who does not exist."""
    check_password(_dummy_hash(), password)


def parse_public_key(text: object) -> bytes:
    """The raw 32 bytes of `ed25519:<base64>`; ValueError otherwise."""
    if not isinstance(text, str) or not text.startswith(_KEY_PREFIX) or len(text) > 128:
        raise ValueError('public_key must be "ed25519:<base64 of 32 bytes>"')
    try:
        raw = base64.b64decode(text[len(_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public_key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError("public_key must hold 32 bytes (an Ed25519 public key)")
    return raw


def check_age_recipient(text: object) -> str:
    """`text` if it is an age X25519 recipient (`age1...`); ValueError otherwise."""
    if not isinstance(text, str) or not text.startswith("age1") or len(text) > 128:
        raise ValueError('age_recipient must be an age X25519 recipient, "age1..."')
    try:
        x25519.Recipient.from_str(text)
    except Exception:  # pyrage's RecipientError
        raise ValueError("age_recipient is not a valid age recipient") from None
    return text
