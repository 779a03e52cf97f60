"""A session's keys, farMFA's scheme: the TEK that constituents seal their
Tocs to, and the KEK without which the oracle cannot open them.

Rules of this module:

- Every session gets a fresh X25519 identity. The TEK is its recipient
  (`age1...`, public: the applicant hands it to the constituents).
- The identity's text (`AGE-SECRET-KEY-1...`, 74 characters) is XOR-ed
  with a 74-byte one-time pad from the random source. The pad, in standard
  base64 with padding, is the KEK: returned to the applicant once, never
  stored. The oracle keeps only the XOR-ed text (`sealed`) and the TEK, so
  its store alone cannot open a single Toc.
- `open_identity(sealed, kek, tek)` decodes the KEK strictly (base64, 74
  bytes), XORs, and accepts the result only if it is an identity whose
  recipient is the TEK (compared with `hmac.compare_digest`); anything else
  is one `QuorumError` with reason `bad_kek` that says no more.
- The KEK and the identity never appear in a repr, a message or a log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

import pyrage
from pyrage import x25519

from shimmfa.errors import QuorumError

__all__ = ["IDENTITY_CHARS", "SessionKeys", "new_session_keys", "open_identity"]

IDENTITY_CHARS = 74
_BAD_KEK = "bad_kek"


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """`tek` (public), `sealed` (what the oracle keeps) and `kek` (what
    the applicant keeps)."""

    tek: str
    sealed: bytes = field(repr=False)
    kek: str = field(repr=False)


def new_session_keys(randbytes: Callable[[int], bytes]) -> SessionKeys:
    """A fresh identity, sealed with a pad drawn from `randbytes`."""
    identity = x25519.Identity.generate()
    text = str(identity).encode("ascii")
    if len(text) != IDENTITY_CHARS:  # the X25519 identity text has one length
        raise QuorumError(f"unexpected age identity length {len(text)}", "internal")
    pad = randbytes(IDENTITY_CHARS)
    if not isinstance(pad, bytes) or len(pad) != IDENTITY_CHARS:
        raise QuorumError(f"randbytes({IDENTITY_CHARS}) must return {IDENTITY_CHARS} bytes")
    return SessionKeys(
        tek=str(identity.to_public()),
        sealed=_xor(text, pad),
        kek=base64.b64encode(pad).decode("ascii"),
    )


def open_identity(sealed: bytes, kek: object, tek: str) -> x25519.Identity:
    """The session's identity, if `kek` is the pad `sealed` was made with."""
    if not isinstance(kek, str) or len(kek) > 4 * IDENTITY_CHARS or len(sealed) != IDENTITY_CHARS:
        raise _bad_kek()
    try:
        pad = base64.b64decode(kek.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _bad_kek() from None
    if len(pad) != IDENTITY_CHARS:
        raise _bad_kek()
    text = _xor(sealed, pad)
    if not text.isascii() or not text.startswith(b"AGE-SECRET-KEY-1"):
        raise _bad_kek()
    try:
        identity = x25519.Identity.from_str(text.decode("ascii"))
    except pyrage.IdentityError:
        raise _bad_kek() from None
    if not hmac.compare_digest(str(identity.to_public()).encode(), tek.encode()):
        raise _bad_kek()
    return identity


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _bad_kek() -> QuorumError:
    return QuorumError(
        "the KEK does not open this session (it is the `kek` that POST /sessions "
        "returned, in base64)",
        _BAD_KEK,
    )
