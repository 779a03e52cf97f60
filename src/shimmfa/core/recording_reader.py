"""Reading and verifying `.shrec` recordings (format: core/recording.py).

Rules:
- Any byte string gives a `Verdict` or a `RecordingError`; nothing else is
  raised, and nothing is trusted before it is checked.
- VALID means: the header and every seal are signed by the header's key (and
  by `trusted_key` when given), every record's chain head matches the one its
  seal lists, and the last record is the footer. With the data key, every
  frame also decrypts under its index and chain head.
- TAMPERED names the first bad record: a frame altered, moved, removed, added
  or taken from another recording, a bad signature, bytes after the footer.
- TRUNCATED (no footer: a crash or a cut) names the last good frame and its
  time. Frames after the last seal count as good only if the data key was
  given and they decrypt; a torn partial record at the end is ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from shimmfa.core.recording import (
    CODE_DIRECTIONS,
    ENTRY,
    FORMAT,
    FRAME,
    HEAD_BYTES,
    HEADER,
    MAGIC,
    SEAL,
    SIGNATURE_BYTES,
    Direction,
    chain_start,
    frame_nonce,
    next_head,
    signed_message,
)
from shimmfa.errors import RecordingError

__all__ = ["Frame", "Recording", "Status", "Verdict", "parse_public_key", "read", "verify"]

_LENGTH = struct.Struct(">I")
PRE_RELEASE_MAGIC = b"SHREC/1\n"  # SHA-256 chain; written only by builds before shrec/2


class Status(StrEnum):
    VALID = "valid"
    TAMPERED = "tampered"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded chunk, from frame `index`."""

    index: int
    direction: Direction
    monotonic: float
    wall: float
    payload: bytes


@dataclass(slots=True)
class Verdict:
    status: Status
    message: str
    header: dict[str, Any]
    footer: dict[str, Any] | None = None
    frames: int = 0
    last_good_frame: int | None = None
    last_good_time: float | None = None
    bad_frame: int | None = None


@dataclass(slots=True)
class Recording:
    verdict: Verdict
    frames: list[Frame] = field(default_factory=list)


class _TamperedError(Exception):
    def __init__(self, message: str, frame: int | None = None) -> None:
        super().__init__(message)
        self.frame = frame


def parse_public_key(text: str) -> bytes:
    """`ed25519:<base64>` -> the 32 raw bytes."""
    prefix, _, encoded = text.partition(":")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if prefix != "ed25519" or len(raw) != 32:
        raise RecordingError(f"not an Ed25519 public key of the form ed25519:<base64>: {text!r}")
    return raw


def _records(data: bytes) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """(offset, kind, body, whole record) for each complete record. Stops at
    a torn tail."""
    offset = len(MAGIC)
    while offset + 5 <= len(data):
        kind = data[offset : offset + 1]
        (length,) = _LENGTH.unpack_from(data, offset + 1)
        end = offset + 5 + length
        if end > len(data):
            return
        yield offset, kind, data[offset + 5 : end], data[offset:end]
        offset = end


def _header(body: bytes, trusted_key: bytes | None) -> tuple[dict[str, Any], Ed25519PublicKey]:
    if len(body) <= SIGNATURE_BYTES:
        raise _TamperedError("the header is too short")
    text, signature = body[:-SIGNATURE_BYTES], body[-SIGNATURE_BYTES:]
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested, unsigned JSON
        raise _TamperedError("the header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _TamperedError(f"the header is not a {FORMAT} header")
    for name in ("session_id", "shim_id", "technician_id", "signing_key", "dek_age"):
        if not isinstance(header.get(name), str):
            raise _TamperedError(f"the header has no valid {name}")
    if not isinstance(header.get("started_at"), int | float):
        raise _TamperedError("the header has no valid started_at")
    try:
        raw_key = parse_public_key(header["signing_key"])
    except RecordingError as exc:
        raise _TamperedError(str(exc)) from None
    if trusted_key is not None and raw_key != trusted_key:
        raise _TamperedError("signed by a different shim key than the one given")
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    try:
        key.verify(signature, signed_message(chain_start(), HEADER, text))
    except InvalidSignature:
        raise _TamperedError("the header signature is invalid") from None
    return header, key


def _seal(body: bytes) -> tuple[dict[str, Any], list[bytes], bytes, bytes]:
    """(info, heads, signed part, signature) of a seal record."""
    if len(body) < 4 + SIGNATURE_BYTES:
        raise _TamperedError("a seal record is too short")
    (size,) = _LENGTH.unpack_from(body, 0)
    heads_len = len(body) - 4 - size - SIGNATURE_BYTES
    if heads_len < 0 or heads_len % HEAD_BYTES:
        raise _TamperedError("a seal record has a malformed length")
    try:
        info = json.loads(body[4 : 4 + size])
    except (ValueError, RecursionError):  # parsed before its signature is checked
        raise _TamperedError("a seal record is not valid JSON") from None
    if not isinstance(info, dict) or info.get("kind") not in ("checkpoint", "footer"):
        raise _TamperedError("a seal record has an unknown kind")
    heads_at = 4 + size
    heads = [body[i : i + HEAD_BYTES] for i in range(heads_at, heads_at + heads_len, HEAD_BYTES)]
    return info, heads, body[:-SIGNATURE_BYTES], body[-SIGNATURE_BYTES:]


def _entries(plain: bytes, index: int) -> list[Frame]:
    entries = []
    offset = 0
    while offset < len(plain):
        if offset + ENTRY.size > len(plain):
            raise _TamperedError(f"frame {index} has a malformed body", index)
        code, mono, wall, length = ENTRY.unpack_from(plain, offset)
        offset += ENTRY.size
        if code not in CODE_DIRECTIONS or offset + length > len(plain):
            raise _TamperedError(f"frame {index} has a malformed body", index)
        payload = plain[offset : offset + length]
        offset += length
        entries.append(Frame(index, CODE_DIRECTIONS[code], mono, wall, payload))
    if not entries:
        raise _TamperedError(f"frame {index} is empty", index)
    return entries


class _Walker:
    """Walks the records once, verifying as it goes."""

    def __init__(self, dek: bytes | None, want_frames: bool) -> None:
        self.aead = ChaCha20Poly1305(dek) if dek is not None else None
        self.want_frames = want_frames
        self.frames: list[Frame] = []
        self.count = 0
        self.pending: list[tuple[bytes, int | None]] = []  # head after, frame index
        self.sealed_frames = 0
        self.sealed_time: float | None = None
        self.decrypted_time: float | None = None
        self.footer: dict[str, Any] | None = None

    def frame(self, body: bytes, head_before: bytes) -> None:
        index = self.count
        self.count += 1
        if self.aead is None:
            return
        try:
            plain = self.aead.decrypt(frame_nonce(index), body, head_before)
        except InvalidTag:
            raise _TamperedError(
                f"frame {index} does not decrypt in its place (altered, moved or foreign)", index
            ) from None
        entries = _entries(plain, index)
        if entries:
            self.decrypted_time = entries[-1].wall
        if self.want_frames:
            self.frames.extend(entries)

    def seal(self, body: bytes, key: Ed25519PublicKey, session_head: bytes, head: bytes) -> None:
        info, heads, signed, signature = _seal(body)
        try:
            key.verify(signature, signed_message(session_head, SEAL, signed))
        except InvalidSignature:
            where = self.pending[0][1] if self.pending else self.count
            raise _TamperedError(f"the seal after frame {where} has an invalid signature") from None
        for position, (listed, (actual, frame)) in enumerate(
            zip(heads, self.pending, strict=False)
        ):
            if listed != actual:
                at = frame if frame is not None else self.sealed_frames + position
                raise _TamperedError(f"frame {at} is not the one that was recorded there", at)
        if len(heads) != len(self.pending):
            at = self.sealed_frames + min(len(heads), len(self.pending))
            what = "missing" if len(heads) > len(self.pending) else "added"
            raise _TamperedError(f"frames are {what} at frame {at}", at)
        if (
            info.get("first_frame") != self.sealed_frames
            or info.get("frames") != self.count
            or info.get("chain_head") != head.hex()
        ):
            raise _TamperedError(f"a seal does not follow on from frame {self.sealed_frames}")
        self.pending = []
        self.sealed_frames = self.count
        wall = info.get("last_frame_wall")
        self.sealed_time = float(wall) if isinstance(wall, int | float) else None
        if info["kind"] == "footer":
            self.footer = info


def _walk(
    data: bytes, trusted_key: bytes | None, dek: bytes | None, want_frames: bool
) -> Recording:
    data = bytes(data)
    if not data.startswith(MAGIC):
        if data.startswith(PRE_RELEASE_MAGIC):
            raise RecordingError(
                "a shrec/1 recording (pre-release format, SHA-256 chain): "
                f"this version reads {FORMAT}"
            )
        raise RecordingError("not a shimmfa recording (bad magic)")
    records = _records(data)
    first = next(records, None)
    if first is None or first[1] != HEADER:
        raise RecordingError("not a shimmfa recording (no header)")
    try:
        header, key = _header(first[2], trusted_key)
    except _TamperedError as exc:
        raise RecordingError(f"the header cannot be trusted: {exc}") from None
    head = next_head(chain_start(), first[3])
    session_head = head
    walker = _Walker(dek, want_frames)
    end = first[0] + len(first[3])
    try:
        for offset, kind, body, whole in records:
            end = offset + len(whole)
            if walker.footer is not None:
                raise _TamperedError("there are records after the footer")
            before, head = head, next_head(head, whole)
            if kind == FRAME:
                walker.frame(body, before)
                walker.pending.append((head, walker.count - 1))
            elif kind == SEAL:
                walker.seal(body, key, session_head, before)
            else:
                raise _TamperedError(f"unknown record type {kind!r} after frame {walker.count}")
        if walker.footer is not None and end != len(data):
            raise _TamperedError("there are bytes after the footer")
    except _TamperedError as exc:
        verdict = Verdict(Status.TAMPERED, f"tampered: {exc}", header, frames=walker.count)
        verdict.bad_frame = exc.frame
        verdict.last_good_frame = walker.sealed_frames - 1 if walker.sealed_frames else None
        return Recording(verdict, walker.frames)
    return Recording(_conclude(header, walker, len(data) - end), walker.frames)


def _conclude(header: dict[str, Any], walker: _Walker, torn: int) -> Verdict:
    if walker.footer is not None:
        return Verdict(
            Status.VALID,
            f"valid: {walker.count} frames, ended {walker.footer.get('terminal_reason')}",
            header,
            walker.footer,
            walker.count,
            walker.count - 1 if walker.count else None,
            walker.sealed_time,
        )
    good, when = walker.sealed_frames, walker.sealed_time
    if walker.aead is not None and walker.count > good:
        good, when = walker.count, walker.decrypted_time
    last = good - 1 if good else None
    unsigned = walker.count - walker.sealed_frames
    detail = f"last good frame {last}" if last is not None else "no frame recorded"
    if unsigned and walker.aead is None:
        detail += f"; {unsigned} later frames are unsealed (verify with --identity to check them)"
    if torn:
        detail += f"; {torn} torn bytes at the end"
    verdict = Verdict(Status.TRUNCATED, f"truncated: {detail}", header, None, walker.count)
    verdict.last_good_frame, verdict.last_good_time = last, when
    return verdict


def verify(data: bytes, *, trusted_key: bytes | None = None, dek: bytes | None = None) -> Verdict:
    """Check a recording; see the module rules. Raises RecordingError only
    when the bytes are not a recording with a trustworthy header."""
    return _walk(data, trusted_key, dek, want_frames=False).verdict


def read(data: bytes, dek: bytes, *, trusted_key: bytes | None = None) -> Recording:
    """Verify and decrypt: the verdict and every frame that verified."""
    return _walk(data, trusted_key, dek, want_frames=True)
