"""The recording format (`shimmfa.core.recording` writes,
`shimmfa.core.recording_reader` verifies and reads).

Recordings here are built with the pure encoder from fixed keys, times and
entries, so every expectation (which frame is bad, the last good frame and its
time) is computed from the layout of docs/recording-format.md by the small
parser in this file, not taken from the reader. The tamper matrix flips every
byte and cuts at every offset of a small complete recording.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
from collections.abc import Callable
from typing import Any

import pytest
from blake3 import blake3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shimmfa.core.recording import MAGIC, Direction, Entry, Header, RecordingEncoder
from shimmfa.core.recording_reader import Recording, Status, Verdict, read, verify
from shimmfa.errors import RecordingError

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
FORGER = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
DEK = bytes(range(100, 132))
OTHER_DEK = bytes(range(200, 232))
T0 = 1_795_431_299.123  # 2026-11-23 10:54:59.123 UTC
SESSION = "20261123T105459.123Z-3f9a1c2b5d7e"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_text(key: Ed25519PrivateKey) -> str:
    return "ed25519:" + base64.b64encode(raw_public(key)).decode()


def make_header(
    key: Ed25519PrivateKey = KEY, session_id: str = SESSION, technician: str = "alice@example.org"
) -> Header:
    return Header(
        session_id=session_id,
        shim_id="shim-empump-001",
        technician_id=technician,
        started_at=T0,
        signing_key=key_text(key),
        recipients=("age1example",),
        encrypted_dek=b"stands in for the age file",
    )


def entry(direction: str, n: int, payload: bytes) -> Entry:
    return (direction, 0.25 * n, T0 + 0.25 * n, payload)


# Six frames; checkpoints after frames 1 and 3; then the footer.
SAMPLE_FRAMES: list[list[Entry]] = [
    [entry("meta", 0, b'{"epoch":1795431299.123,"event":"auth_success","type":"meta"}')],
    [entry("out", 1, b"PUMP v3.2 service menu\r\n> "), entry("in", 2, b"status\r")],
    [entry("out", 3, b"rate=5.0 ml/h\r\n")],
    [entry("in", 4, bytes(range(256))), entry("out", 5, b"")],
    [entry("out", 6, b"\x00\xff" * 40)],
    [entry("in", 7, b"exit\r"), entry("meta", 8, b'{"event":"note"}')],
]
SAMPLE_CHECKPOINTS = (1, 3)


def build(
    frames: list[list[Entry]] = SAMPLE_FRAMES,
    checkpoints: tuple[int, ...] = SAMPLE_CHECKPOINTS,
    *,
    footer: bool = True,
    header: Header | None = None,
    dek: bytes = DEK,
    key: Ed25519PrivateKey = KEY,
) -> bytes:
    encoder = RecordingEncoder(header or make_header(key), dek, key.sign)
    parts = [encoder.header_record]
    for index, entries in enumerate(frames):
        parts.append(encoder.frame(entries))
        if index in checkpoints:
            parts.append(encoder.checkpoint())
    if footer:
        parts.append(encoder.footer(T0 + 10.0, T0, "technician_hangup"))
    return b"".join(parts)


SAMPLE = build()


# -- an independent reading of the layout (docs/recording-format.md) ----------


@dataclasses.dataclass(frozen=True)
class Rec:
    kind: bytes
    start: int  # offset of the type byte
    end: int  # offset after the body
    frame: int | None  # index, for frames

    @property
    def body_start(self) -> int:
        return self.start + 5


def layout(data: bytes) -> list[Rec]:
    assert data.startswith(MAGIC)
    records, offset, frames = [], len(MAGIC), 0
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset + 1)
        kind = data[offset : offset + 1]
        records.append(Rec(kind, offset, offset + 5 + length, frames if kind == b"F" else None))
        frames += kind == b"F"
        offset += 5 + length
    assert offset == len(data)
    return records


SAMPLE_LAYOUT = layout(SAMPLE)
HEADER_END = SAMPLE_LAYOUT[0].end
FRAME_RECORDS = [r for r in SAMPLE_LAYOUT if r.kind == b"F"]


def splice(data: bytes, records: list[Rec]) -> bytes:
    return MAGIC + b"".join(data[r.start : r.end] for r in records)


def seal_json(data: bytes, rec: Rec) -> dict[str, Any]:
    (size,) = struct.unpack_from(">I", data, rec.body_start)
    return json.loads(data[rec.body_start + 4 : rec.body_start + 4 + size])


def expect_last_good(records: list[Rec], cut: int, data: bytes) -> tuple[int | None, int | None]:
    """(last sealed frame, last complete frame) of `data[:cut]`."""
    sealed = complete = 0
    for rec in records:
        if rec.end > cut:
            break
        if rec.kind == b"F":
            complete += 1
        elif rec.kind == b"S":
            sealed = seal_json(data, rec)["frames"]
    return (sealed - 1 if sealed else None), (complete - 1 if complete else None)


def frame_wall(index: int | None) -> float | None:
    return None if index is None else SAMPLE_FRAMES[index][-1][2]


def outcome(data: bytes, **kwargs: Any) -> Verdict | type[RecordingError]:
    try:
        return verify(data, **kwargs)
    except RecordingError:
        return RecordingError


# -- the format as the document describes it -------------------------------------------


def test_bytes_follow_the_documented_chain_nonces_and_signatures() -> None:
    """Recompute everything from the spec: head_0, head_{k+1} =
    BLAKE3(head_k || record), frames open with nonce = 4 zero bytes + u64
    index and AD = the head before, seals list the heads and are signed over
    the documented message."""
    public = KEY.public_key()
    head = blake3(b"shimmfa recording chain v2" + MAGIC).digest()
    header = SAMPLE_LAYOUT[0]
    text = SAMPLE[header.body_start : header.end - 64]
    public.verify(
        SAMPLE[header.end - 64 : header.end], b"shimmfa recording signature v2" + head + b"H" + text
    )
    assert json.loads(text)["signing_key"] == key_text(KEY)
    head = blake3(head + SAMPLE[header.start : header.end]).digest()
    session_head, since_seal, aead = head, [], ChaCha20Poly1305(DEK)
    for rec in SAMPLE_LAYOUT[1:]:
        whole, body = SAMPLE[rec.start : rec.end], SAMPLE[rec.body_start : rec.end]
        if rec.kind == b"F":
            assert rec.frame is not None
            nonce = bytes(4) + rec.frame.to_bytes(8, "big")
            plain = aead.decrypt(nonce, body, head)
            code, _, wall, length = struct.unpack_from(">cddI", plain)
            first = SAMPLE_FRAMES[rec.frame][0]
            assert (code, wall, plain[21 : 21 + length]) == (
                first[0][0].encode(),
                first[2],
                first[3],
            )
            head = blake3(head + whole).digest()
            since_seal.append(head)
            continue
        assert rec.kind == b"S"
        (size,) = struct.unpack_from(">I", body)
        info = json.loads(body[4 : 4 + size])
        assert info["chain_head"] == head.hex()
        assert body[4 + size : -64] == b"".join(since_seal)
        assert info["records"] == len(since_seal)
        public.verify(
            body[-64:], b"shimmfa recording signature v2" + session_head + b"S" + body[:-64]
        )
        head = blake3(head + whole).digest()
        since_seal = []
    assert info["kind"] == "footer"
    assert info["terminal_reason"] == "technician_hangup"
    assert (info["bytes_inbound"], info["bytes_outbound"]) == (
        sum(len(e[3]) for f in SAMPLE_FRAMES for e in f if e[0] == "in"),
        sum(len(e[3]) for f in SAMPLE_FRAMES for e in f if e[0] == "out"),
    )


def test_traffic_is_not_in_the_file_in_plaintext() -> None:
    markers = [b"MARKER-OUT-7f3a9c21d5e8", b"MARKER-IN-0b4d6e8f1a2c3", b"MARKER-EVENT-55aa77cc"]
    data = build(
        [[entry("out", 1, markers[0]), entry("in", 2, markers[1]), entry("meta", 3, markers[2])]]
    )
    for marker in markers:
        assert marker not in data
    assert [f.payload for f in read(data, DEK).frames] == markers


def test_direction_names_of_the_seed() -> None:
    assert Direction.INBOUND is Direction.IN and Direction.IN == "in"
    assert Direction.OUTBOUND is Direction.OUT and Direction.OUT == "out"
    assert Direction.META == "meta"


# -- valid recordings ------------------------------------------------------------------


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
def test_complete_recording_is_valid(dek: bytes | None) -> None:
    verdict = verify(SAMPLE, dek=dek, trusted_key=raw_public(KEY))
    assert verdict.status is Status.VALID
    assert verdict.frames == len(SAMPLE_FRAMES)
    assert verdict.last_good_frame == len(SAMPLE_FRAMES) - 1
    assert verdict.bad_frame is None
    assert verdict.header["technician_id"] == "alice@example.org"
    assert verdict.footer is not None and verdict.footer["terminal_reason"] == "technician_hangup"


def test_read_returns_every_entry_in_order_with_its_frame_index() -> None:
    recording = read(SAMPLE, DEK)
    assert recording.verdict.status is Status.VALID
    expected = [
        (index, direction, mono, wall, payload)
        for index, entries in enumerate(SAMPLE_FRAMES)
        for direction, mono, wall, payload in entries
    ]
    got = [(f.index, f.direction.value, f.monotonic, f.wall, f.payload) for f in recording.frames]
    assert got == expected


def test_round_trip_of_all_byte_values_empty_and_large_chunks() -> None:
    big_out = bytes((i * 7 + 3) % 256 for i in range(300 << 10))
    big_in = bytes(reversed(big_out))
    frames = [
        [entry("in", 1, bytes(range(256))), entry("out", 2, b"")],
        [entry("out", 3, big_out)],
        [entry("meta", 4, b'{"event":"x"}'), entry("in", 5, big_in), entry("out", 6, b"\x00")],
    ]
    data = build(frames, checkpoints=(0,))
    got = [(f.direction.value, f.payload) for f in read(data, DEK).frames]
    assert got == [(e[0], e[3]) for f in frames for e in f]


@given(
    frames=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["in", "out", "meta"]), st.binary(max_size=300)),
            min_size=1,
            max_size=4,
        ),
        max_size=6,
    ),
    checkpoints=st.sets(st.integers(0, 5)),
)
@settings(max_examples=150, deadline=None)
def test_any_entries_round_trip_in_order_byte_exact(
    frames: list[list[tuple[str, bytes]]], checkpoints: set[int]
) -> None:
    entries = [[entry(d, i, p) for i, (d, p) in enumerate(f)] for f in frames]
    data = build(entries, tuple(checkpoints))
    recording = read(data, DEK)
    assert recording.verdict.status is Status.VALID
    assert [(f.direction.value, f.payload) for f in recording.frames] == [
        (d, p) for f in frames for d, p in f
    ]


# -- the tamper matrix -----------------------------------------------------------------


def record_at(position: int) -> Rec:
    return next(r for r in SAMPLE_LAYOUT if r.start <= position < r.end)


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
def test_flipping_any_single_byte_is_never_valid(dek: bytes | None) -> None:
    problems = []
    for position, mask in ((p, m) for p in range(len(SAMPLE)) for m in (1 << (p % 8), 0xFF)):
        mutated = bytearray(SAMPLE)
        mutated[position] ^= mask
        got = outcome(bytes(mutated), dek=dek)
        if position < HEADER_END:
            ok = got is RecordingError
        else:
            rec = record_at(position)
            if got is RecordingError or not isinstance(got, Verdict):
                ok = False
            elif position < rec.body_start and position > rec.start:  # the length field
                ok = got.status in (Status.TAMPERED, Status.TRUNCATED)
            elif rec.kind == b"F" and position >= rec.body_start:
                ok = got.status is Status.TAMPERED and got.bad_frame == rec.frame
            else:  # a type byte, or anything in a seal
                ok = got.status is Status.TAMPERED
        if not ok:
            problems.append((position, mask, got))
    assert problems == []


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
def test_cutting_at_any_offset_is_truncated_with_the_last_good_frame(dek: bytes | None) -> None:
    problems = []
    for cut in range(len(SAMPLE)):
        got = outcome(SAMPLE[:cut], dek=dek)
        if cut < HEADER_END:
            if got is not RecordingError:
                problems.append((cut, got))
            continue
        sealed, complete = expect_last_good(SAMPLE_LAYOUT, cut, SAMPLE)
        last = complete if dek is not None else sealed
        if not (
            isinstance(got, Verdict)
            and got.status is Status.TRUNCATED
            and got.last_good_frame == last
            and got.last_good_time == frame_wall(last)
        ):
            problems.append((cut, got))
    assert problems == []


def test_cuts_at_record_boundaries_name_sealed_frames_only_without_the_dek() -> None:
    """At the end of frame 4 (sealed up to frame 3 by the checkpoint)."""
    cut = FRAME_RECORDS[4].end
    assert verify(SAMPLE[:cut]).last_good_frame == 3
    assert "unsealed" in verify(SAMPLE[:cut]).message
    assert verify(SAMPLE[:cut], dek=DEK).last_good_frame == 4
    just_header = verify(SAMPLE[:HEADER_END], dek=DEK)
    assert (just_header.status, just_header.last_good_frame) == (Status.TRUNCATED, None)


def other_recording(dek: bytes) -> bytes:
    """Another session by the same shim (same signing key)."""
    header = make_header(session_id="20261123T110000.000Z-aaaaaaaaaaaa")
    return build(header=header, dek=dek)


def delete(records: list[Rec], k: int) -> list[Rec]:
    return [r for r in records if r.frame != k]


def reorder(records: list[Rec], k: int) -> list[Rec]:
    out = list(records)
    i, j = out.index(FRAME_RECORDS[k]), out.index(FRAME_RECORDS[k + 1])
    out[i], out[j] = out[j], out[i]
    return out


def duplicate(records: list[Rec], k: int) -> list[Rec]:
    out = list(records)
    at = out.index(FRAME_RECORDS[k])
    return out[: at + 1] + [FRAME_RECORDS[k]] + out[at + 1 :]


FRAME_OPS: dict[str, tuple[Callable[[list[Rec], int], list[Rec]], int]] = {
    # name: (operation on frame k, offset of the frame that must be named)
    "delete": (delete, 0),
    "reorder": (reorder, 0),
    "duplicate": (duplicate, 1),
}


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
@pytest.mark.parametrize(
    ("op", "k"),
    [
        (op, k)
        for op in sorted(FRAME_OPS)
        for k in range(len(SAMPLE_FRAMES) - (op == "reorder"))  # reorder swaps k and k + 1
    ],
)
def test_frame_deleted_reordered_or_duplicated_is_named(op: str, k: int, dek: bytes | None) -> None:
    operation, named = FRAME_OPS[op]
    mutated = splice(SAMPLE, operation(SAMPLE_LAYOUT, k))
    verdict = verify(mutated, dek=dek)
    assert verdict.status is Status.TAMPERED, verdict
    assert verdict.bad_frame == k + named, verdict
    assert f"frame {k + named}" in verdict.message


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
@pytest.mark.parametrize("other_dek", [OTHER_DEK, DEK], ids=["other-dek", "same-dek"])
@pytest.mark.parametrize("k", range(len(SAMPLE_FRAMES)))
def test_frame_from_another_recording_is_named(k: int, other_dek: bytes, dek: bytes | None) -> None:
    other = other_recording(other_dek)
    foreign = next(r for r in layout(other) if r.frame == k)
    mine = FRAME_RECORDS[k]
    mutated = SAMPLE[: mine.start] + other[foreign.start : foreign.end] + SAMPLE[mine.end :]
    assert mutated != SAMPLE
    verdict = verify(mutated, dek=dek)
    assert (verdict.status, verdict.bad_frame) == (Status.TAMPERED, k), verdict


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
@pytest.mark.parametrize(
    "edit",
    ["delete-checkpoint", "duplicate-checkpoint", "checkpoint-from-other", "swap-checkpoints"],
)
def test_seal_removed_repeated_or_foreign_is_tampered(edit: str, dek: bytes | None) -> None:
    first, second = [r for r in SAMPLE_LAYOUT if r.kind == b"S"][:2]
    at = SAMPLE_LAYOUT.index(first)
    pieces = [SAMPLE[r.start : r.end] for r in SAMPLE_LAYOUT]
    if edit == "delete-checkpoint":
        del pieces[at]
    elif edit == "duplicate-checkpoint":
        pieces.insert(at, pieces[at])
    elif edit == "swap-checkpoints":
        there = SAMPLE_LAYOUT.index(second)
        pieces[at], pieces[there] = pieces[there], pieces[at]
    else:  # the same position's checkpoint from another session of this shim
        other = other_recording(DEK)
        theirs = next(r for r in layout(other) if r.kind == b"S")
        assert (
            theirs.frame is None
            and SAMPLE[first.start : first.end] != other[theirs.start : theirs.end]
        )
        pieces[at] = other[theirs.start : theirs.end]
    assert verify(MAGIC + b"".join(pieces), dek=dek).status is Status.TAMPERED


@pytest.mark.parametrize("dek", [None, DEK], ids=["without-dek", "with-dek"])
def test_a_seal_covering_no_record_cannot_be_repeated_or_moved(dek: bytes | None) -> None:
    """Only its chain head binds a seal that lists no heads to its place
    (here the footer lists none: the checkpoints before it covered all)."""
    encoder = RecordingEncoder(make_header(), DEK, KEY.sign)
    start = encoder.header_record
    frame = encoder.frame([entry("out", 1, b"one")])
    sealed, empty = encoder.checkpoint(), encoder.checkpoint()
    footer = encoder.footer(T0 + 3, T0, "technician_hangup")
    assert verify(start + frame + sealed + empty + footer, dek=dek).status is Status.VALID
    for mutated in (
        start + frame + sealed + empty + empty + footer,
        start + frame + sealed + sealed + empty + footer,
        start + frame + sealed + footer,
    ):
        assert verify(mutated, dek=dek).status is Status.TAMPERED


@pytest.mark.parametrize(
    "tail",
    [b"\x00", b"F\x00\x00", b"F\x00\x00\x00\x00", b"junk after the end", "footer", "frame"],
)
def test_anything_after_the_footer_is_tampered(tail: bytes | str) -> None:
    if tail == "footer":
        extra = SAMPLE[SAMPLE_LAYOUT[-1].start :]
    elif tail == "frame":
        extra = SAMPLE[FRAME_RECORDS[-1].start : FRAME_RECORDS[-1].end]
    else:
        assert isinstance(tail, bytes)
        extra = tail
    for dek in (None, DEK):
        verdict = verify(SAMPLE + extra, dek=dek)
        assert verdict.status is Status.TAMPERED, (tail, verdict)


def rebuild_header(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """Edit the header JSON and keep the old signature."""
    header = layout(data)[0]
    text, signature = data[header.body_start : header.end - 64], data[header.end - 64 : header.end]
    fields = json.loads(text)
    change(fields)
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + signature
    return MAGIC + b"H" + struct.pack(">I", len(body)) + body + data[header.end :]


def test_header_with_another_data_key_keeps_no_trust() -> None:
    def swap_dek(fields: dict[str, Any]) -> None:
        fields["dek_age"] = base64.b64encode(b"the DEK wrapped for the attacker").decode()
        fields["recipients"] = ["age1attacker"]

    mutated = rebuild_header(SAMPLE, swap_dek)
    with pytest.raises(RecordingError, match="header"):
        verify(mutated)
    with pytest.raises(RecordingError, match="header"):
        read(mutated, DEK)


def forge(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """Re-sign a whole recording with `key`: a new header naming it, a
    recomputed chain, every seal's heads and signature redone. Frames are
    copied unchanged (the forger has no DEK)."""
    records = layout(data)
    header = records[0]
    fields = json.loads(data[header.body_start : header.end - 64])
    fields["signing_key"] = key_text(key)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    head = blake3(b"shimmfa recording chain v2" + MAGIC).digest()
    body = text + key.sign(b"shimmfa recording signature v2" + head + b"H" + text)
    out = [MAGIC, record := b"H" + struct.pack(">I", len(body)) + body]
    head = blake3(head + record).digest()
    session_head, heads = head, []
    for rec in records[1:]:
        if rec.kind == b"F":
            record = data[rec.start : rec.end]
            head = blake3(head + record).digest()
            heads.append(head)
        else:
            info = seal_json(data, rec)
            info["chain_head"] = head.hex()
            signed_json = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
            signed = struct.pack(">I", len(signed_json)) + signed_json + b"".join(heads)
            body = signed + key.sign(
                b"shimmfa recording signature v2" + session_head + b"S" + signed
            )
            record = b"S" + struct.pack(">I", len(body)) + body
            head, heads = blake3(head + record).digest(), []
        out.append(record)
    return b"".join(out)


def test_a_recording_re_signed_by_another_key_passes_only_without_the_pinned_key() -> None:
    forged = forge(SAMPLE, FORGER)
    assert forged != SAMPLE
    assert verify(forged).status is Status.VALID  # why --pubkey matters
    assert verify(forged, trusted_key=raw_public(FORGER)).status is Status.VALID
    with pytest.raises(RecordingError, match="different shim key"):
        verify(forged, trusted_key=raw_public(KEY))
    # The frames were bound to the genuine header: whoever holds the DEK sees it.
    with_dek = verify(forged, dek=DEK)
    assert (with_dek.status, with_dek.bad_frame) == (Status.TAMPERED, 0)


def test_the_genuine_key_is_accepted_when_pinned() -> None:
    assert verify(SAMPLE, trusted_key=raw_public(KEY)).status is Status.VALID
    with pytest.raises(RecordingError, match="different shim key"):
        verify(SAMPLE, trusted_key=raw_public(FORGER))


def test_wrong_dek_names_frame_zero() -> None:
    verdict = verify(SAMPLE, dek=OTHER_DEK)
    assert (verdict.status, verdict.bad_frame) == (Status.TAMPERED, 0)


# -- anything at all -------------------------------------------------------------------


def check_any(data: bytes) -> list[Verdict]:
    """verify() and read() give verdicts or raise RecordingError, nothing else."""
    verdicts = []
    for call in (
        lambda: verify(data),
        lambda: verify(data, dek=DEK),
        lambda: read(data, DEK).verdict,
        lambda: verify(data, trusted_key=raw_public(KEY)),
    ):
        try:
            verdicts.append(call())
        except RecordingError:
            pass
    return verdicts


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_any_bytes_give_a_verdict_or_recording_error(data: bytes) -> None:
    check_any(data)


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_magic_and_any_bytes_give_a_verdict_or_recording_error(data: bytes) -> None:
    check_any(MAGIC + data)


def test_a_pre_release_shrec1_file_is_named_not_called_garbage() -> None:
    """shrec/1 (SHA-256 chain) came only from builds before shrec/2: the
    reader says what the file is and what it reads instead."""
    old = b"SHREC/1\n" + SAMPLE[len(MAGIC) :]
    for call in (lambda: verify(old), lambda: read(old, DEK)):
        with pytest.raises(RecordingError, match=r"shrec/1 recording .*reads shrec/2"):
            call()


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_a_valid_header_and_any_bytes_are_never_valid_and_never_raise(data: bytes) -> None:
    for got in (verify(SAMPLE[:HEADER_END] + data), read(SAMPLE[:HEADER_END] + data, DEK).verdict):
        assert got.status is not Status.VALID


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(SAMPLE) - 1), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(SAMPLE) - 1), st.integers(1, 80)),
    st.tuples(st.just("insert"), st.integers(0, len(SAMPLE)), st.binary(min_size=1, max_size=80)),
    st.tuples(st.just("replace"), st.integers(0, len(SAMPLE) - 1), st.binary(min_size=1)),
    st.tuples(st.just("cut"), st.integers(0, len(SAMPLE) - 1), st.just(0)),
)


def mutate(data: bytes, mutation: tuple[str, int, Any]) -> bytes:
    kind, at, arg = mutation
    at %= len(data) + 1  # earlier steps may have shortened it
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ arg]) + data[at + 1 :] if at < len(data) else data
    if kind == "delete":
        return data[:at] + data[at + arg :]
    if kind == "insert":
        return data[:at] + arg + data[at:]
    if kind == "replace":
        return data[:at] + arg + data[at + len(arg) :]
    return data[:at]


@given(st.lists(mutations, min_size=1, max_size=3))
@settings(max_examples=400, deadline=None)
def test_a_mutated_recording_is_never_valid(steps: list[tuple[str, int, Any]]) -> None:
    data = SAMPLE
    for step in steps:
        data = mutate(data, step)
    assume(data != SAMPLE)
    for verdict in check_any(data):
        assert verdict.status is not Status.VALID


def nested_json_record(kind: bytes, depth: int) -> bytes:
    body = b"[" * depth + b"]" * depth
    if kind == b"S":
        body = struct.pack(">I", len(body)) + body
    body += bytes(64)
    return kind + struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deeply_nested_json_in_a_header_is_a_recording_error(depth: int) -> None:
    with pytest.raises(RecordingError):
        verify(MAGIC + nested_json_record(b"H", depth))


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deeply_nested_json_in_a_seal_is_tampered(depth: int) -> None:
    data = SAMPLE[: FRAME_RECORDS[0].end] + nested_json_record(b"S", depth)
    for got in check_any(data):
        assert got.status is Status.TAMPERED


# -- the encoder's own rules -----------------------------------------------------------


def test_encoder_refuses_bad_keys_empty_frames_and_frames_after_the_footer() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        RecordingEncoder(make_header(), bytes(16), KEY.sign)
    encoder = RecordingEncoder(make_header(), DEK, KEY.sign)
    with pytest.raises(ValueError, match="at least one entry"):
        encoder.frame([])
    encoder.footer(T0 + 1, T0, "shutdown")
    with pytest.raises(ValueError, match="closed"):
        encoder.frame([entry("out", 1, b"late")])


def test_a_frame_too_large_for_a_record_leaves_the_recording_intact() -> None:
    """A refused frame must not advance the frame counter or the byte counts,
    or every later seal (and the footer) would be reported as tampered."""
    encoder = RecordingEncoder(make_header(), DEK, KEY.sign)
    parts = [encoder.header_record, encoder.frame([entry("out", 1, b"before")])]
    with pytest.raises(ValueError, match="exceeds"):
        encoder.frame([entry("out", 2, bytes(9 << 20))])
    parts.append(encoder.frame([entry("in", 3, b"after")]))
    parts.append(encoder.footer(T0 + 5, T0, "technician_hangup"))
    recording: Recording = read(b"".join(parts), DEK)
    assert recording.verdict.status is Status.VALID, recording.verdict
    assert [f.payload for f in recording.frames] == [b"before", b"after"]
    footer = recording.verdict.footer
    assert footer is not None and (footer["bytes_inbound"], footer["bytes_outbound"]) == (5, 6)
