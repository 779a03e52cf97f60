"""Technician bundles as a shim receives them from central
(`GET /api/v1/shims/{id}/technicians`): checking the signature, opening the
age ciphertext and validating every field, before anything is stored.

Rules:
- The answer is `{"bundle", "sig", "signed_by"}`: `bundle` ASCII-armored age
  ciphertext, `sig` the standard base64 Ed25519 signature of
  `CONTEXT + bundle.encode("ascii")`. The signature is checked against the
  key the shim PINS (`central.public_key`), never against `signed_by`, which
  only helps the message when the two differ (a rotated key).
- Order: shape, signature, decryption, JSON, shim ID, version, every
  technician's fields. The first failure raises `BundleError` with its
  `BundleRejection` reason; nothing is returned half-checked.
- The plaintext is exactly `{shim_id, version, issued_at, technicians}`,
  each technician exactly `{technician_id, totp_secret, algorithm, digits,
  period, roles, name, company}`. Unknown keys are refused: the format is
  versioned by `CONTEXT` (a new field comes with a new context).
- `version` must be greater than the last one the shim accepted (rollback
  protection); a secret must be valid base32 of at least 128 bits (central
  makes 160); IDs follow the gate's rule (1-128 characters, no spaces or
  control characters) and appear once.
- Messages never contain a secret. Pure: no clock, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyrage
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pyrage import x25519

from shimmfa.core.recording_reader import parse_public_key
from shimmfa.core.totp import ALGORITHMS, InvalidSecretError, TechnicianRecord, decode_secret
from shimmfa.errors import BundleError, RecordingError

__all__ = [
    "CONTEXT",
    "MAX_ANSWER_CHARS",
    "MIN_SECRET_BYTES",
    "ROLES",
    "BundleRejection",
    "BundleTechnician",
    "TechnicianBundle",
    "open_bundle",
    "pinned_key",
]

CONTEXT = b"shimmfa technician bundle v1\n"
MAX_ANSWER_CHARS = 16 << 20  # an armored bundle of some 50,000 technicians
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 128
MAX_TEXT = 256
ROLES = frozenset({"admin"})
ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----"
TOP_KEYS = frozenset({"shim_id", "version", "issued_at", "technicians"})
TECHNICIAN_KEYS = frozenset(
    {"technician_id", "totp_secret", "algorithm", "digits", "period", "roles", "name", "company"}
)


class BundleRejection(StrEnum):
    MALFORMED = "malformed"  # not the answer's shape
    BAD_SIGNATURE = "bad_signature"  # not signed by the pinned key (forged or altered)
    UNDECRYPTABLE = "undecryptable"  # signed, but not to this shim's age identity
    WRONG_SHIM = "wrong_shim"  # another shim's bundle
    NOT_NEWER = "not_newer"  # a version at or below the one held: a replay or rollback
    INVALID = "invalid"  # a field of the plaintext is wrong


@dataclass(frozen=True, slots=True)
class BundleTechnician:
    technician_id: str
    totp_secret: str = field(repr=False)
    algorithm: str
    digits: int
    period: int
    roles: tuple[str, ...]
    name: str
    company: str

    def record(self) -> TechnicianRecord:
        return TechnicianRecord(
            technician_id=self.technician_id,
            totp_secret=self.totp_secret,
            notes=f"from central: {self.name} ({self.company})",
            algorithm=self.algorithm,
            digits=self.digits,
            period=self.period,
            roles=self.roles,
        )


@dataclass(frozen=True, slots=True)
class TechnicianBundle:
    shim_id: str
    version: int
    issued_at: float
    technicians: tuple[BundleTechnician, ...]


def _refuse(reason: BundleRejection, message: str) -> BundleError:
    return BundleError(f"technician bundle refused ({reason}): {message}", reason.value)


def pinned_key(text: str) -> bytes:
    """`ed25519:<base64>` (as `shimmfa central keys show` prints it) -> the
    32 raw bytes; ValueError otherwise."""
    try:
        return parse_public_key(text)
    except RecordingError:
        raise ValueError(
            f"not an Ed25519 public key of the form ed25519:<base64>: {text!r}"
        ) from None


def open_bundle(
    answer: object,
    *,
    pinned: bytes,
    identity: x25519.Identity,
    shim_id: str,
    last_version: int,
) -> TechnicianBundle:
    """The checked bundle of `answer` (central's JSON); BundleError with the
    reason otherwise (see the module rules)."""
    armored, signature, signed_by = _shape(answer)
    try:
        Ed25519PublicKey.from_public_bytes(pinned).verify(
            signature, CONTEXT + armored.encode("ascii")
        )
    except (InvalidSignature, ValueError):
        hint = ""
        if signed_by != _key_text(pinned):
            hint = f"; it names {signed_by[:60]!r}, central.public_key pins {_key_text(pinned)!r}"
        raise _refuse(
            BundleRejection.BAD_SIGNATURE,
            f"the signature does not verify with the pinned key{hint}",
        ) from None
    try:
        plain = pyrage.decrypt(armored.encode("ascii"), [identity])
    except Exception:  # pyrage's DecryptError and friends
        raise _refuse(
            BundleRejection.UNDECRYPTABLE,
            "it does not open with this shim's age identity (keys/shim.agekey): is the "
            "shim's age recipient registered at central the one `shimmfa keys show` prints?",
        ) from None
    try:
        document = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse(BundleRejection.INVALID, "the plaintext is not UTF-8 JSON") from None
    return _document(document, shim_id, last_version)


def _key_text(raw: bytes) -> str:
    return "ed25519:" + base64.b64encode(raw).decode("ascii")


def _shape(answer: object) -> tuple[str, bytes, str]:
    if not isinstance(answer, Mapping) or set(answer) != {"bundle", "sig", "signed_by"}:
        raise _refuse(BundleRejection.MALFORMED, 'not {"bundle", "sig", "signed_by"}')
    armored, sig, signed_by = answer["bundle"], answer["sig"], answer["signed_by"]
    if not all(isinstance(value, str) for value in (armored, sig, signed_by)):
        raise _refuse(BundleRejection.MALFORMED, "bundle, sig and signed_by must be strings")
    if len(armored) > MAX_ANSWER_CHARS or not armored.isascii() or ARMOR not in armored[:100]:
        raise _refuse(BundleRejection.MALFORMED, "bundle is not ASCII-armored age ciphertext")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64:
        raise _refuse(BundleRejection.MALFORMED, "sig is not a base64 Ed25519 signature")
    return armored, signature, signed_by


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _document(document: object, shim_id: str, last_version: int) -> TechnicianBundle:
    if not isinstance(document, dict) or set(document) != TOP_KEYS:
        raise _refuse(
            BundleRejection.INVALID, f"the plaintext must have exactly {sorted(TOP_KEYS)}"
        )
    if document["shim_id"] != shim_id:
        shown = str(document["shim_id"])[:128]
        raise _refuse(BundleRejection.WRONG_SHIM, f"it is for {shown!r}, not {shim_id!r}")
    version, issued_at = document["version"], document["issued_at"]
    if not isinstance(version, int) or isinstance(version, bool) or not 0 < version < 1 << 63:
        raise _refuse(BundleRejection.INVALID, "version must be a positive integer")
    if version <= last_version:
        raise _refuse(
            BundleRejection.NOT_NEWER,
            f"version {version} is not above {last_version}, the one held (a replay or rollback)",
        )
    if not _number(issued_at) or not math.isfinite(float(issued_at)):
        raise _refuse(BundleRejection.INVALID, "issued_at must be a finite number")
    entries = document["technicians"]
    if not isinstance(entries, list):
        raise _refuse(BundleRejection.INVALID, "technicians must be a list")
    technicians = tuple(_technician(index, entry) for index, entry in enumerate(entries))
    seen: set[str] = set()
    for technician in technicians:
        if technician.technician_id in seen:
            raise _refuse(
                BundleRejection.INVALID, f"technician {technician.technician_id!r} appears twice"
            )
        seen.add(technician.technician_id)
    return TechnicianBundle(shim_id, version, float(issued_at), technicians)


def _technician(index: int, entry: object) -> BundleTechnician:
    where = f"technicians[{index}]"
    if not isinstance(entry, dict) or set(entry) != TECHNICIAN_KEYS:
        raise _refuse(
            BundleRejection.INVALID, f"{where} must have exactly {sorted(TECHNICIAN_KEYS)}"
        )
    tid = entry["technician_id"]
    if not isinstance(tid, str) or not _identifier(tid):
        raise _refuse(
            BundleRejection.INVALID,
            f"{where}.technician_id must be 1 to 128 characters without spaces or control "
            "characters",
        )
    where = f"technician {tid!r}"
    _check_secret(where, entry["totp_secret"])
    algorithm, digits, period = entry["algorithm"], entry["digits"], entry["period"]
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise _refuse(
            BundleRejection.INVALID, f"{where}: algorithm must be one of {sorted(ALGORITHMS)}"
        )
    if not _integer(digits) or digits not in (6, 8):
        raise _refuse(BundleRejection.INVALID, f"{where}: digits must be 6 or 8")
    if not _integer(period) or not 10 <= period <= 300:
        raise _refuse(BundleRejection.INVALID, f"{where}: period must be 10 to 300 seconds")
    roles = entry["roles"]
    if (
        not isinstance(roles, list)
        or not all(isinstance(role, str) and role in ROLES for role in roles)
        or len(set(roles)) != len(roles)
    ):
        raise _refuse(
            BundleRejection.INVALID, f"{where}: roles must be distinct, of {sorted(ROLES)}"
        )
    texts = []
    for key in ("name", "company"):
        value = entry[key]
        if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
            raise _refuse(BundleRejection.INVALID, f"{where}: {key} must be printable text")
        texts.append(value)
    return BundleTechnician(
        tid, entry["totp_secret"], algorithm, digits, period, tuple(roles), texts[0], texts[1]
    )


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _identifier(text: str) -> bool:
    return 0 < len(text) <= 128 and not any(
        ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text
    )


def _check_secret(where: str, secret: object) -> None:
    if not isinstance(secret, str) or len(secret) > 512:
        raise _refuse(BundleRejection.INVALID, f"{where}: totp_secret must be base32 text")
    try:
        key = decode_secret(secret)
    except InvalidSecretError:
        raise _refuse(
            BundleRejection.INVALID, f"{where}: totp_secret is not valid base32"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise _refuse(
            BundleRejection.INVALID,
            f"{where}: totp_secret must be {MIN_SECRET_BYTES * 8} to {MAX_SECRET_BYTES * 8} bits",
        )
