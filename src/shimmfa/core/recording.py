"""The session recording format (`.shrec`, version 2): encoding.

A recording is `MAGIC` followed by records, each `type (1 byte) | length
(u32, big-endian) | body`. Rules (docs/recording-format.md explains them):

- `H` header, first record: canonical JSON (session, shim, technician, start
  time, the shim's Ed25519 public key, the age recipients, and the per-session
  256-bit data key (DEK) encrypted with age), then a 64-byte Ed25519
  signature.
- `F` frame: ChaCha20-Poly1305 ciphertext under the DEK of one or more
  entries `direction (1 byte: i/o/m) | monotonic seconds since start (f64) |
  wall time (f64) | length (u32) | payload`, in the order they happened (the
  recorder seals what arrived since its last pass into one frame, so the
  relay's path stays cheap); nonce = frame index (u64, zero-padded to 12
  bytes); associated data = the chain head before the record. Traffic is
  never in plaintext.
- `S` seal: canonical JSON (`kind` checkpoint or footer), the chain head after
  each record since the previous seal (32 bytes each), then a signature. A
  checkpoint is written at every fsync; the footer (byte counts, terminal
  reason, end time) is the last record of a complete recording.
- Chain: head_0 = BLAKE3(CHAIN_DOMAIN || MAGIC); head_{n+1} =
  BLAKE3(head_n || type || length || body) over every record (32-byte
  digests). BLAKE3 rather than SHA-256 because the chain covers every byte
  of traffic: on the shim it costs a quarter of SHA-256's CPU, and that CPU
  is taken from the wire (see docs/recording-format.md). Signatures
  cover SIG_DOMAIN || head after the header (binds the session) || type ||
  signed body, so a seal's list of heads pins every record to its position.
- No I/O, clock or randomness here: the caller passes keys, nonces' source
  (the frame counter), times and the encrypted DEK.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from blake3 import blake3
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "CHAIN_DOMAIN",
    "FORMAT",
    "MAGIC",
    "MAX_RECORD",
    "SIG_DOMAIN",
    "ENTRY",
    "ENTRY_IN",
    "ENTRY_OUT",
    "READ_SIZE",
    "Direction",
    "Entry",
    "Header",
    "RecordingEncoder",
    "by_direction",
    "canonical_json",
    "chain_start",
    "frame_nonce",
    "iso_utc",
    "next_head",
    "pack_record",
    "signed_message",
]

MAGIC = b"SHREC/2\n"
FORMAT = "shrec/2"
CHAIN = "blake3"
CHAIN_DOMAIN = b"shimmfa recording chain v2"
SIG_DOMAIN = b"shimmfa recording signature v2"
MAX_RECORD = 8 << 20
HEADER, FRAME, SEAL = b"H", b"F", b"S"
SIGNATURE_BYTES = 64
HEAD_BYTES = 32
ENTRY = struct.Struct(">cddI")
ENTRY_IN, ENTRY_OUT = ord("i"), ord("o")  # ENTRY's first byte for the two directions
# The most traffic bytes one relay read packs into one entry: a tty read never
# returns more than the 4 KiB line-discipline buffer.
READ_SIZE = 4096
_LENGTH = struct.Struct(">I")


def by_direction(code: int, count: int) -> tuple[int, int]:
    """`count` bytes of entry code `code` as (bytes in, bytes out)."""
    return (count, 0) if code == ENTRY_IN else (0, count)


class Direction(StrEnum):
    """Seed names: IN/OUT and INBOUND/OUTBOUND are the same members."""

    IN = "in"  # technician -> device
    OUT = "out"  # device -> technician
    META = "meta"  # an event recorded in the session
    INBOUND = "in"
    OUTBOUND = "out"


Entry = tuple[str, float, float, bytes]
"""One recorded chunk: (direction, monotonic since start, wall time, payload)."""

DIRECTION_CODES: dict[str, bytes] = {"in": b"i", "out": b"o", "meta": b"m"}
CODE_DIRECTIONS: dict[bytes, Direction] = {
    b"i": Direction.IN,
    b"o": Direction.OUT,
    b"m": Direction.META,
}


def iso_utc(epoch: float) -> str:
    """An epoch as the seed's records write it: ISO 8601, UTC, `+00:00`."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_start() -> bytes:
    return blake3(CHAIN_DOMAIN + MAGIC).digest()


def pack_record(kind: bytes, body: bytes) -> bytes:
    if len(body) > MAX_RECORD:
        raise ValueError(f"record of {len(body)} bytes exceeds {MAX_RECORD}")
    return kind + _LENGTH.pack(len(body)) + body


def next_head(head: bytes, *record: bytes) -> bytes:
    """The chain head after `record` (given whole, or in consecutive parts)."""
    digest = blake3(head)
    for part in record:
        digest.update(part)
    return digest.digest()


def frame_nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + index.to_bytes(8, "big")


def signed_message(session_head: bytes, kind: bytes, body: bytes) -> bytes:
    """What a header or seal signature covers. For the header itself
    `session_head` is the chain start."""
    return SIG_DOMAIN + session_head + kind + body


@dataclass(frozen=True, slots=True)
class Header:
    session_id: str
    shim_id: str
    technician_id: str
    started_at: float
    signing_key: str  # "ed25519:<base64 of the raw 32 bytes>"
    recipients: tuple[str, ...]
    encrypted_dek: bytes  # age ciphertext of the 32-byte DEK
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        import base64

        return {
            **self.extra,
            "format": FORMAT,
            "session_id": self.session_id,
            "shim_id": self.shim_id,
            "technician_id": self.technician_id,
            "started_at": self.started_at,
            "signing_key": self.signing_key,
            "recipients": list(self.recipients),
            "cipher": "chacha20-poly1305",
            "chain": CHAIN,
            "dek_age": base64.b64encode(self.encrypted_dek).decode(),
        }


class RecordingEncoder:
    """Turns a session into the bytes of its recording, record by record.

    `sign` signs a message with the shim's Ed25519 key. The DEK lives only in
    this object; `forget()` drops it at the end of the session.
    """

    def __init__(self, header: Header, dek: bytes, sign: Callable[[bytes], bytes]) -> None:
        if len(dek) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead: ChaCha20Poly1305 | None = ChaCha20Poly1305(dek)
        self._sign = sign
        self._head = chain_start()
        self._frames = 0
        self._records_since_seal: list[bytes] = []
        self._first_frame_since_seal = 0
        self._last_wall = header.started_at
        header_body = canonical_json(header.to_json())
        signature = sign(signed_message(self._head, HEADER, header_body))
        self.header_record = MAGIC + self._append(HEADER, header_body + signature, track=False)
        """The start of the file: MAGIC and the signed header record."""
        self._session_head = self._head
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def head(self) -> bytes:
        return self._head

    def _append(self, kind: bytes, body: bytes, *, track: bool = True) -> bytes:
        return b"".join(self._append_parts(kind, body, track=track))

    def _append_parts(self, kind: bytes, body: bytes, *, track: bool = True) -> tuple[bytes, bytes]:
        """The record as (type | length, body), without copying the body."""
        if len(body) > MAX_RECORD:
            raise ValueError(f"record of {len(body)} bytes exceeds {MAX_RECORD}")
        prefix = kind + _LENGTH.pack(len(body))
        self._head = next_head(self._head, prefix, body)
        if track:
            self._records_since_seal.append(self._head)
        return prefix, body

    def frame(self, entries: list[Entry]) -> bytes:
        """Seal `entries` (direction, monotonic, wall, payload) as one frame."""
        return b"".join(self.frame_parts(entries))

    def frame_parts(self, entries: list[Entry]) -> tuple[bytes, bytes]:
        """`frame()` as two buffers to write one after the other (no copy of
        the sealed body: the recorder hands both to `os.writev`)."""
        if self._aead is None:
            raise ValueError("the recording is closed")
        if not entries:
            raise ValueError("a frame needs at least one entry")
        parts = []
        counts = {b"i": 0, b"o": 0, b"m": 0}
        for direction, monotonic, wall, payload in entries:
            code = DIRECTION_CODES[direction]
            parts.append(ENTRY.pack(code, monotonic, wall, len(payload)))
            parts.append(payload)
            counts[code] += len(payload)
        return self.packed_frame_parts(b"".join(parts), counts[b"i"], counts[b"o"], entries[-1][2])

    def packed_frame_parts(
        self, plaintext: bytes | memoryview, bytes_in: int, bytes_out: int, last_wall: float
    ) -> tuple[bytes, bytes]:
        """Seal a frame whose plaintext the caller built of whole ENTRY-packed
        entries (the recorder process receives them so), with their byte
        counts per direction and the wall time of the last one."""
        if self._aead is None:
            raise ValueError("the recording is closed")
        if not plaintext:
            raise ValueError("a frame needs at least one entry")
        # Refuse before changing any state: a frame counted but never written
        # would make every later seal, and so the whole file, look tampered.
        if len(plaintext) + 16 > MAX_RECORD:
            raise ValueError(f"a frame of {len(plaintext)} bytes exceeds {MAX_RECORD}")
        sealed = self._aead.encrypt(frame_nonce(self._frames), plaintext, self._head)
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self._last_wall = last_wall
        self._frames += 1
        return self._append_parts(FRAME, sealed)

    def checkpoint(self) -> bytes:
        return self._seal({"kind": "checkpoint"})

    def footer(self, ended_at: float, started_at: float, reason: str) -> bytes:
        record = self._seal(
            {
                "kind": "footer",
                "ended_at": ended_at,
                "duration_seconds": max(0.0, ended_at - started_at),
                "bytes_inbound": self.bytes_in,
                "bytes_outbound": self.bytes_out,
                "terminal_reason": reason,
            }
        )
        self.forget()
        return record

    def forget(self) -> None:
        self._aead = None

    def _seal(self, fields: dict[str, Any]) -> bytes:
        heads = self._records_since_seal
        info = {
            **fields,
            "first_frame": self._first_frame_since_seal,
            "frames": self._frames,
            "records": len(heads),
            "last_frame_wall": self._last_wall,
            "chain_head": self._head.hex(),
        }
        signed = _LENGTH.pack(len(body := canonical_json(info))) + body + b"".join(heads)
        signature = self._sign(signed_message(self._session_head, SEAL, signed))
        self._records_since_seal = []
        self._first_frame_since_seal = self._frames
        return self._append(SEAL, signed + signature, track=False)
