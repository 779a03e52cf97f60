"""Tocs sealed with age: what the dealer hands each holder and what a
constituent sends the oracle. Uses pyrage; interoperates with Debian's `age`.

Rules of this module:

- A sealed Toc is an age v1 file to one X25519 recipient (`age1...`),
  ASCII-armored: `-----BEGIN AGE ENCRYPTED FILE-----`, base64 lines of 64
  characters, `-----END AGE ENCRYPTED FILE-----`, as farMFA and `age -a`
  write it. The plaintext is the Toc's JSON (`Toc.to_json()`); reading, the
  JSON may be followed by a newline (farMFA's Go encoder and `echo | age`
  add one).
- Opening insists on the armor: binary age files and anything else are
  refused (`not_armor`) before any decryption is tried. Armor that does not
  hold an age v1 file, or a file that fails to decrypt (altered, cut), is
  `undecryptable`; a well-formed file none of the identities opens is
  `wrong_identity`. A plaintext that is not a Toc raises `TocError` (core).
- Only X25519 recipients and identities are accepted (`bad_recipient`,
  `bad_identity`). Identity files are read as `age-keygen` writes them
  (comment lines, then `AGE-SECRET-KEY-1...` lines).
- Every refusal is a `QuorumError` whose `reason` is a `SealProblem`. No
  message, repr or log line contains an identity, a share or a plaintext:
  pyrage's own error texts are not passed on. A sealed Toc is at most
  `MAX_SEALED_CHARS` characters (a Toc is at most `MAX_TOC_CHARS`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import pyrage
from pyrage import x25519

from shimmfa.core.toc import Toc, parse_toc
from shimmfa.errors import QuorumError

__all__ = [
    "ARMOR_BEGIN",
    "ARMOR_END",
    "MAX_SEALED_CHARS",
    "SealProblem",
    "armored_payload",
    "identity_file_text",
    "new_identity",
    "open_sealed",
    "open_toc",
    "parse_identity",
    "parse_recipient",
    "read_identity_file",
    "seal",
    "seal_toc",
]

ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
MAX_SEALED_CHARS = 16384
_AGE_MAGIC = b"age-encryption.org/v1\n"
_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")
_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


class SealProblem(StrEnum):
    """Why a sealed Toc, a recipient or an identity was refused."""

    NOT_ARMOR = "not_armor"
    UNDECRYPTABLE = "undecryptable"
    WRONG_IDENTITY = "wrong_identity"
    BAD_RECIPIENT = "bad_recipient"
    BAD_IDENTITY = "bad_identity"


# -- keys ---------------------------------------------------------------------------------------


def new_identity() -> x25519.Identity:
    """A fresh X25519 identity (pyrage draws it from the OS CSPRNG)."""
    return x25519.Identity.generate()


def parse_recipient(text: object) -> x25519.Recipient:
    """An `age1...` X25519 recipient; QuorumError(bad_recipient) otherwise."""
    if not isinstance(text, str) or not _RECIPIENT.fullmatch(text.strip()):
        shown = repr(text[:70]) if isinstance(text, str) else type(text).__name__
        raise QuorumError(
            f"{shown} is not an age X25519 recipient (age1 and 58 more characters, "
            "as `age-keygen -y` or `shimmfa quorum keygen` print it)",
            SealProblem.BAD_RECIPIENT,
        )
    try:
        return x25519.Recipient.from_str(text.strip())
    except pyrage.RecipientError:
        raise QuorumError(
            f"{text.strip()!r} is not a valid age recipient (its checksum is wrong)",
            SealProblem.BAD_RECIPIENT,
        ) from None


def parse_identity(text: object) -> x25519.Identity:
    """An `AGE-SECRET-KEY-1...` identity; QuorumError(bad_identity) otherwise.
    The message never quotes the text."""
    if isinstance(text, str) and text.strip().upper().startswith(_IDENTITY_PREFIX):
        try:
            return x25519.Identity.from_str(text.strip().upper())
        except pyrage.IdentityError:
            pass
    raise QuorumError(
        "not an age X25519 identity (AGE-SECRET-KEY-1..., as age-keygen writes it)",
        SealProblem.BAD_IDENTITY,
    )


def read_identity_file(path: Path) -> list[x25519.Identity]:
    """The identities of an age identity file (`age-keygen -o` or
    `shimmfa quorum keygen -o`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuorumError(f"{path}: no such identity file", SealProblem.BAD_IDENTITY) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise QuorumError(f"{path}: cannot read: {why}", SealProblem.BAD_IDENTITY) from None
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(parse_identity(line))
        except QuorumError:
            raise QuorumError(
                f"{path}: line {number} is not an age X25519 identity", SealProblem.BAD_IDENTITY
            ) from None
    if not identities:
        raise QuorumError(f"{path}: holds no age identity", SealProblem.BAD_IDENTITY)
    return identities


def identity_file_text(identity: x25519.Identity, now: float) -> str:
    """An identity file as `age-keygen` writes it (creation time, public key)."""
    created = dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"# created: {created}\n# public key: {identity.to_public()}\n{identity}\n"


# -- sealing ------------------------------------------------------------------------------------


def seal(plaintext: bytes, recipient: str | x25519.Recipient) -> str:
    """`plaintext` encrypted to one recipient, ASCII-armored (LF line ends)."""
    if isinstance(recipient, str):
        recipient = parse_recipient(recipient)
    sealed: bytes = pyrage.encrypt(plaintext, [recipient], armored=True)
    return sealed.decode("ascii")


def seal_toc(toc: Toc, recipient: str | x25519.Recipient) -> str:
    """A Toc's JSON sealed to a holder (or to a session's TEK)."""
    return seal(toc.to_json().encode("utf-8"), recipient)


def armored_payload(armored: object) -> bytes:
    """The age file inside an armored text, checked to be an age v1 file;
    QuorumError(not_armor | undecryptable) otherwise. Trailing and leading
    whitespace and CRLF line ends are allowed."""
    if isinstance(armored, bytes):
        try:
            armored = armored.decode("ascii")
        except UnicodeDecodeError:
            raise _not_armor() from None
    if not isinstance(armored, str) or len(armored) > MAX_SEALED_CHARS:
        raise _not_armor()
    lines = armored.strip().replace("\r\n", "\n").split("\n")
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise _not_armor()
    body = lines[1:-1]
    if any(len(line) != 64 for line in body[:-1]) or not 0 < len(body[-1]) <= 64:
        raise _undecryptable("its armor's lines are not 64 characters, as age writes them")
    try:
        payload = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise _undecryptable("its armor is not valid base64") from None
    if not payload.startswith(_AGE_MAGIC):
        raise _undecryptable("its armor does not hold an age v1 file")
    return payload


def open_sealed(armored: object, identities: Sequence[x25519.Identity]) -> bytes:
    """The plaintext of an armored age file that one of `identities` opens."""
    payload = armored_payload(armored)
    try:
        plaintext: bytes = pyrage.decrypt(payload, list(identities))
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise QuorumError(
                "this sealed Toc is not for the identity given (no matching key)",
                SealProblem.WRONG_IDENTITY,
            ) from None
        raise _undecryptable("it was altered or cut") from None
    return plaintext


def open_toc(armored: object, identities: Sequence[x25519.Identity]) -> Toc:
    """A sealed Toc opened and parsed (TocError if the plaintext is no Toc)."""
    return parse_toc(open_sealed(armored, identities))


def _not_armor() -> QuorumError:
    return QuorumError(
        f"not an ASCII-armored age file (it must start with {ARMOR_BEGIN}; "
        "`age -r age1... -a` writes one)",
        SealProblem.NOT_ARMOR,
    )


def _undecryptable(why: str) -> QuorumError:
    return QuorumError(f"the sealed Toc cannot be decrypted: {why}", SealProblem.UNDECRYPTABLE)
