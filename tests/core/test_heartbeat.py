"""Heartbeats (`shimmfa.core.heartbeat`): canonical encoding, Ed25519
signatures, and the verifier a central service runs.

Signatures are checked with `cryptography` directly over the bytes the spec
names (JSON, sorted keys, `,`/`:`, UTF-8), not through our verifier; the
canonical text and its signature in tests/vectors/heartbeat.json were written
by hand and made by OpenSSL. Malformed payloads are signed correctly before
they are sent, so a rejection is for the malformation, not the signature.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from shimmfa.core.heartbeat import (
    FIELDS,
    MAX_WIRE_BYTES,
    HeartbeatVerifier,
    Rejection,
    VerifiedHeartbeat,
    canonical,
    format_sent_at,
    heartbeat_payload,
    sign_heartbeat,
    verify_heartbeat,
)
from shimmfa.errors import HeartbeatError, ShimMfaError

VECTOR = json.loads(
    (Path(__file__).parents[1] / "vectors" / "heartbeat.json").read_text(encoding="utf-8")
)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
FORGER = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
SHIM = "shim-empump-001"
SESSION = "20261123T105459.123Z-3f9a1c2b5d7e"
DIGEST_A = hashlib.sha256(b"config").hexdigest()
DIGEST_B = hashlib.sha256(b"software").hexdigest()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


KEYS = {SHIM: raw_public(KEY)}


def spec_bytes(obj: Any) -> bytes:
    """The canonical encoding as the spec words it (lets NaN and lone
    surrogates through, so that malformed payloads can still be signed)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "shim_id": SHIM,
        "hardware_id": "4c4c4544-0042-3510-8056-b4c04f4e3732",
        "seq": 5,
        "boot_count": 3,
        "uptime_s": 300.125,
        "sent_at": "2026-11-23T10:59:59.123Z",
        "state": "ok",
        "open_session": None,
        "config_sha256": DIGEST_A,
        "software_sha256": DIGEST_B,
    }
    base.update(changes)
    return base


def signed(body: dict[str, Any], key: Ed25519PrivateKey = KEY) -> dict[str, Any]:
    """A wire form signed here, without our signer or its checks."""
    return {"payload": body, "sig": base64.b64encode(key.sign(spec_bytes(body))).decode()}


def rejection(wire: Any, last: dict[str, tuple[int, int]] | None = None) -> str:
    with pytest.raises(HeartbeatError) as caught:
        verify_heartbeat(wire, KEYS, last or {})
    assert str(caught.value)
    return caught.value.reason


# -- canonical encoding and the known-answer vector -------------------------------------------


def test_canonical_matches_the_hand_written_vector() -> None:
    expected = VECTOR["canonical"].encode("utf-8")
    assert len(expected) == VECTOR["canonical_length"]
    assert hashlib.sha256(expected).hexdigest() == VECTOR["canonical_sha256"]
    assert canonical(VECTOR["payload"]) == expected
    assert "Ω".encode() in expected  # raw UTF-8, not \u03a9


def test_signing_the_vector_gives_openssls_signature() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["secret_key_hex"]))
    assert raw_public(key).hex() == VECTOR["public_key_hex"]
    wire = sign_heartbeat(VECTOR["payload"], key.sign)
    assert wire["sig"] == VECTOR["sig"]  # Ed25519 is deterministic
    assert wire["payload"] == VECTOR["payload"]


def test_the_vector_verifies() -> None:
    wire = {"payload": VECTOR["payload"], "sig": VECTOR["sig"]}
    keys = {VECTOR["payload"]["shim_id"]: bytes.fromhex(VECTOR["public_key_hex"])}
    beat = verify_heartbeat(json.dumps(wire, indent=2), keys, {})
    assert beat.position == (7, 42)
    assert beat.as_payload() == VECTOR["payload"]


@settings(max_examples=50)
@given(st.permutations(sorted(FIELDS)))
def test_canonical_does_not_depend_on_key_order(order: list[str]) -> None:
    body = payload(open_session=SESSION)
    assert canonical({name: body[name] for name in order}) == canonical(body)


def test_canonical_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical({"uptime_s": math.nan})


# -- signing ----------------------------------------------------------------------------------


def test_the_signature_verifies_with_cryptography_over_the_spec_bytes() -> None:
    body = payload(open_session=SESSION, state="tampered")
    wire = sign_heartbeat(body, KEY.sign)
    assert set(wire) == {"payload", "sig"}
    assert wire["payload"] == body
    signature = base64.b64decode(wire["sig"], validate=True)
    Ed25519PublicKey.from_public_bytes(KEYS[SHIM]).verify(signature, spec_bytes(body))
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(raw_public(FORGER)).verify(signature, spec_bytes(body))


def test_sign_refuses_a_payload_the_verifier_would_refuse() -> None:
    with pytest.raises(HeartbeatError, match="seq"):
        sign_heartbeat(payload(seq=0), KEY.sign)
    with pytest.raises(HeartbeatError, match="missing"):
        sign_heartbeat({k: v for k, v in payload().items() if k != "state"}, KEY.sign)


def test_sign_refuses_a_signer_that_does_not_return_a_signature() -> None:
    with pytest.raises(HeartbeatError, match="64-byte"):
        sign_heartbeat(payload(), lambda message: b"short")


def test_heartbeat_payload_formats_time_and_uptime() -> None:
    moment = dt.datetime(2026, 4, 1, 12, 0, 0, 250_400, tzinfo=dt.UTC)
    body = heartbeat_payload(
        shim_id=SHIM,
        hardware_id="hw-1",
        seq=1,
        boot_count=1,
        uptime_s=12.34567,
        sent_at=moment.timestamp(),
        state="ok",
        open_session=None,
        config_sha256=DIGEST_A,
        software_sha256=DIGEST_B,
    )
    assert set(body) == FIELDS
    assert body["sent_at"] == "2026-04-01T12:00:00.250Z"
    assert body["uptime_s"] == 12.346
    wire = sign_heartbeat(body, KEY.sign)
    assert verify_heartbeat(wire, KEYS, {}).sent_at_epoch == pytest.approx(
        moment.timestamp() - 0.0004, abs=1e-6
    )


@pytest.mark.parametrize("uptime", [-1.0, math.nan, math.inf, 10**400, True, "5"])
def test_heartbeat_payload_refuses_a_bad_uptime(uptime: Any) -> None:
    with pytest.raises(HeartbeatError, match="uptime_s"):
        heartbeat_payload(**{**payload(), "sent_at": 0.0, "uptime_s": uptime})


def test_format_sent_at() -> None:
    assert format_sent_at(0) == "1970-01-01T00:00:00.000Z"
    assert format_sent_at(1_795_431_299.1239) == "2026-11-23T10:54:59.123Z"
    with pytest.raises(HeartbeatError, match="sent_at"):
        format_sent_at(1e300)


# -- verifying: accepted ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["mapping", "str", "bytes", "pretty bytes"])
def test_a_good_heartbeat_is_accepted_in_every_form(form: str) -> None:
    wire = sign_heartbeat(payload(open_session=SESSION), KEY.sign)
    sent: Any = {
        "mapping": wire,
        "str": json.dumps(wire),
        "bytes": json.dumps(wire, ensure_ascii=False).encode(),
        "pretty bytes": json.dumps(wire, indent=4, sort_keys=False).encode(),
    }[form]
    beat = verify_heartbeat(sent, KEYS, {SHIM: (3, 4)})
    assert isinstance(beat, VerifiedHeartbeat)
    assert (beat.shim_id, beat.seq, beat.boot_count, beat.open_session) == (SHIM, 5, 3, SESSION)
    assert beat.position == (3, 5)


def test_a_new_boot_restarting_seq_at_one_is_accepted() -> None:
    beat = verify_heartbeat(signed(payload(boot_count=4, seq=1)), KEYS, {SHIM: (3, 10_000)})
    assert beat.position == (4, 1)


def test_other_shims_do_not_count() -> None:
    assert verify_heartbeat(signed(payload(seq=1)), KEYS, {"shim-other": (99, 99)}).seq == 1


# -- verifying: rejected ----------------------------------------------------------------------


def test_a_forged_heartbeat_is_rejected() -> None:
    assert rejection(signed(payload(), FORGER)) == Rejection.BAD_SIGNATURE


def test_an_unknown_shim_is_rejected() -> None:
    wire = signed(payload(shim_id="shim-stranger"))
    assert rejection(wire) == Rejection.UNKNOWN_SHIM
    with pytest.raises(HeartbeatError, match="shim-stranger") as caught:
        verify_heartbeat(wire, {"shim-stranger": b"\x00" * 31}, {})
    assert caught.value.reason == Rejection.UNKNOWN_SHIM


# Every field, changed to another value that is itself well formed.
ALTERED = {
    "shim_id": "shim-empump-002",
    "hardware_id": "4c4c4544-0042-3510-8056-b4c04f4e3733",
    "seq": 6,
    "boot_count": 4,
    "uptime_s": 300.126,
    "sent_at": "2026-11-23T10:59:59.124Z",
    "state": "tampered",
    "open_session": SESSION,
    "config_sha256": DIGEST_B,
    "software_sha256": DIGEST_A,
}


def test_the_alteration_table_covers_every_field() -> None:
    assert set(ALTERED) == FIELDS


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_altering_any_field_breaks_the_signature(field: str) -> None:
    wire = sign_heartbeat(payload(), KEY.sign)
    wire["payload"][field] = ALTERED[field]
    keys = {**KEYS, "shim-empump-002": raw_public(KEY)}
    with pytest.raises(HeartbeatError) as caught:
        verify_heartbeat(wire, keys, {})
    assert caught.value.reason == Rejection.BAD_SIGNATURE


def test_an_int_uptime_is_not_the_float_that_was_signed() -> None:
    wire = sign_heartbeat(payload(uptime_s=300.0), KEY.sign)
    text = json.dumps(wire).replace('"uptime_s": 300.0', '"uptime_s": 300')
    assert '"uptime_s": 300,' in text or '"uptime_s": 300}' in text
    assert rejection(text) == Rejection.BAD_SIGNATURE


@pytest.mark.parametrize("index", [0, 1, 31, 32, 63])
def test_altering_the_signature_is_rejected(index: int) -> None:
    wire = sign_heartbeat(payload(), KEY.sign)
    raw = bytearray(base64.b64decode(wire["sig"]))
    raw[index] ^= 0x01
    assert rejection({**wire, "sig": base64.b64encode(bytes(raw)).decode()}) == (
        Rejection.BAD_SIGNATURE
    )


def test_every_other_spelling_of_the_signature_is_rejected() -> None:
    wire = sign_heartbeat(payload(), KEY.sign)
    sig = wire["sig"]
    # The last character before "==" carries 4 unused bits: a different letter
    # can decode to the same 64 bytes. Any change of the text is refused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for letter in alphabet:
        if letter != sig[-3]:
            spelled = sig[:-3] + letter + "=="
            assert rejection({**wire, "sig": spelled}) != "accepted"
    for other in (sig.rstrip("="), sig + "\n", " " + sig, sig.replace("+", "-").replace("/", "_")):
        if other != sig:
            assert rejection({**wire, "sig": other}) == Rejection.MALFORMED


def test_a_replay_is_rejected() -> None:
    wire = signed(payload(seq=5, boot_count=3))
    assert rejection(wire, {SHIM: (3, 5)}) == Rejection.NOT_NEWER
    with pytest.raises(HeartbeatError, match="replay"):
        verify_heartbeat(wire, KEYS, {SHIM: (3, 5)})


@pytest.mark.parametrize(
    ("boot_count", "seq"),
    [(3, 4), (3, 1), (2, 5), (2, 9_999), (1, 1)],
    ids=["lower seq", "first seq", "lower boot", "lower boot higher seq", "oldest"],
)
def test_an_older_heartbeat_is_rejected(boot_count: int, seq: int) -> None:
    wire = signed(payload(seq=seq, boot_count=boot_count))
    assert rejection(wire, {SHIM: (3, 5)}) == Rejection.NOT_NEWER
    with pytest.raises(HeartbeatError, match="older"):
        verify_heartbeat(wire, KEYS, {SHIM: (3, 5)})


def test_the_verifier_remembers_and_only_what_it_accepted() -> None:
    verifier = HeartbeatVerifier(KEYS)
    first = signed(payload(seq=1, boot_count=1))
    assert verifier.verify(first).position == (1, 1)
    assert verifier.last == {SHIM: (1, 1)}
    with pytest.raises(HeartbeatError) as caught:
        verifier.verify(first)
    assert caught.value.reason == Rejection.NOT_NEWER
    with pytest.raises(HeartbeatError):  # forged, and far ahead: must not move `last`
        verifier.verify(signed(payload(seq=1, boot_count=50), FORGER))
    assert verifier.last == {SHIM: (1, 1)}
    assert verifier.verify(signed(payload(seq=2, boot_count=1))).position == (1, 2)
    assert verifier.verify(signed(payload(seq=1, boot_count=2))).position == (2, 1)
    assert verifier.last == {SHIM: (2, 1)}
    verifier.last[SHIM] = (0, 0)  # a copy: changing it changes nothing
    assert verifier.last == {SHIM: (2, 1)}


def test_the_verifier_starts_from_a_given_position_and_sees_new_keys() -> None:
    keys: dict[str, bytes] = {}
    verifier = HeartbeatVerifier(keys, {SHIM: (3, 5)})
    wire = signed(payload(seq=6))
    with pytest.raises(HeartbeatError):
        verifier.verify(wire)
    keys[SHIM] = raw_public(KEY)
    assert verifier.verify(wire).seq == 6
    with pytest.raises(HeartbeatError):
        HeartbeatVerifier(KEYS, {SHIM: (3, 6)}).verify(wire)


SURROGATE = "\ud800"
MALFORMED_PAYLOADS = {
    "seq 0": {"seq": 0},
    "seq negative": {"seq": -1},
    "seq 2**63": {"seq": 2**63},
    "seq float": {"seq": 5.0},
    "seq bool": {"seq": True},
    "seq string": {"seq": "5"},
    "boot_count 0": {"boot_count": 0},
    "boot_count null": {"boot_count": None},
    "uptime negative": {"uptime_s": -0.5},
    "uptime huge": {"uptime_s": 1e11},
    "uptime string": {"uptime_s": "300"},
    "uptime bool": {"uptime_s": False},
    "uptime NaN": {"uptime_s": math.nan},
    "uptime Infinity": {"uptime_s": math.inf},
    "sent_at epoch": {"sent_at": 1795431299.123},
    "sent_at no ms": {"sent_at": "2026-11-23T10:59:59Z"},
    "sent_at offset": {"sent_at": "2026-11-23T10:59:59.123+00:00"},
    "sent_at Feb 30": {"sent_at": "2026-02-30T10:59:59.123Z"},
    "sent_at trailing newline": {"sent_at": "2026-11-23T10:59:59.123Z\n"},
    "sent_at other digits": {"sent_at": "２026-11-23T10:59:59.123Z"},
    "state upper": {"state": "OK"},
    "state other": {"state": "fine"},
    "state list": {"state": ["ok"]},
    "open_session not an ID": {"open_session": "session-1"},
    "open_session number": {"open_session": 1},
    "config digest upper": {"config_sha256": DIGEST_A.upper()},
    "config digest short": {"config_sha256": DIGEST_A[:63]},
    "software digest long": {"software_sha256": DIGEST_B + "0"},
    "software digest null": {"software_sha256": None},
    "shim_id empty": {"shim_id": ""},
    "shim_id space": {"shim_id": "shim 1"},
    "shim_id too long": {"shim_id": "s" * 129},
    "shim_id control": {"shim_id": "shim\x1b[2J"},
    "shim_id number": {"shim_id": 1},
    "hardware_id newline": {"hardware_id": "hw\n1"},
    "hardware_id surrogate": {"hardware_id": "hw" + SURROGATE},
    "hardware_id DEL": {"hardware_id": "hw\x7f"},
}


@pytest.mark.parametrize("change", MALFORMED_PAYLOADS.values(), ids=MALFORMED_PAYLOADS.keys())
def test_a_malformed_field_is_rejected_even_when_signed(change: dict[str, Any]) -> None:
    body = payload(**change)
    keys = {**KEYS, str(body["shim_id"]): raw_public(KEY)}  # known, if only it were well formed
    wire = signed(body)
    with pytest.raises(HeartbeatError) as caught:
        verify_heartbeat(wire, keys, {})
    assert caught.value.reason == Rejection.MALFORMED
    with pytest.raises(HeartbeatError):
        sign_heartbeat(body, KEY.sign)


def test_limits_are_inclusive() -> None:
    body = payload(shim_id="s" * 128, seq=2**63 - 1, boot_count=2**63 - 1, uptime_s=1e10)
    keys = {"s" * 128: raw_public(KEY)}
    assert verify_heartbeat(sign_heartbeat(body, KEY.sign), keys, {}).seq == 2**63 - 1
    assert verify_heartbeat(signed(payload(uptime_s=0)), KEYS, {}).uptime_s == 0


def test_non_ascii_ids_are_accepted() -> None:
    body = payload(shim_id="shim-Ω-é", hardware_id="机器-1")
    keys = {"shim-Ω-é": raw_public(KEY)}
    assert verify_heartbeat(json.dumps(signed(body)).encode(), keys, {}).hardware_id == "机器-1"


def test_missing_and_extra_fields_are_rejected() -> None:
    for name in sorted(FIELDS):
        body = payload()
        del body[name]
        assert rejection(signed(body)) == Rejection.MALFORMED
    assert rejection(signed(payload(late=True))) == Rejection.MALFORMED


def test_the_wire_shape_is_exact() -> None:
    wire = signed(payload())
    assert rejection({**wire, "extra": 1}) == Rejection.MALFORMED
    assert rejection({"payload": wire["payload"]}) == Rejection.MALFORMED
    assert rejection({"sig": wire["sig"]}) == Rejection.MALFORMED
    assert rejection({**wire, "payload": [wire["payload"]]}) == Rejection.MALFORMED
    assert rejection({**wire, "sig": None}) == Rejection.MALFORMED
    assert rejection({**wire, "sig": base64.b64encode(bytes(63)).decode()}) == Rejection.MALFORMED
    assert rejection([wire]) == Rejection.MALFORMED
    assert rejection(json.dumps([wire])) == Rejection.MALFORMED
    assert rejection(12) == Rejection.MALFORMED


def test_json_the_verifier_refuses() -> None:
    text = json.dumps(signed(payload()))
    assert rejection(text.replace('"seq": 5', '"seq": 5, "seq": 6')) == Rejection.MALFORMED
    assert rejection(text.replace("300.125", "NaN")) == Rejection.MALFORMED
    assert rejection(text.replace("300.125", "Infinity")) == Rejection.MALFORMED
    assert rejection(text.encode("utf-16")) == Rejection.MALFORMED
    assert rejection(b"\xff" + text.encode()) == Rejection.MALFORMED
    assert rejection(text[:-1]) == Rejection.MALFORMED
    assert rejection("[" * 100_000) == Rejection.MALFORMED
    assert rejection(b"[" * 10_000 + b"]" * 10_000) == Rejection.MALFORMED
    deep = "[" * (MAX_WIRE_BYTES // 2) + "]" * (MAX_WIRE_BYTES // 2)
    assert rejection(deep) == Rejection.MALFORMED  # deep nesting, within the size limit
    assert rejection(text.replace("300.125", "1" * 5000)) == Rejection.MALFORMED
    padded = text[:-1] + " " * (MAX_WIRE_BYTES - len(text) + 1) + "}"
    assert len(padded) == MAX_WIRE_BYTES + 1
    assert rejection(padded) == Rejection.MALFORMED
    assert verify_heartbeat(padded[:-2] + "}", KEYS, {}).seq == 5


def test_heartbeat_error_is_a_shimmfa_error() -> None:
    assert issubclass(HeartbeatError, ShimMfaError)
    assert HeartbeatError("x").reason == "malformed"


# -- properties -------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
FIELD_VALUES = st.one_of(
    JSON,
    st.sampled_from(list(ALTERED.values()) + list(payload().values())),
)


def _outcome(wire: Any, last: dict[str, tuple[int, int]] | None = None) -> str:
    try:
        verify_heartbeat(wire, KEYS, last or {})
    except HeartbeatError as exc:
        assert exc.reason in set(Rejection)
        return exc.reason
    return "accepted"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_heartbeat_error_or_a_result(data: bytes) -> None:
    _outcome(data)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_any_json_value_gives_a_heartbeat_error_or_a_result(value: Any) -> None:
    _outcome(value)
    try:
        text = json.dumps(value)
    except ValueError:
        return
    _outcome(text)
    _outcome(text.encode())


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(FIELDS | {"late", ""})), FIELD_VALUES, max_size=4),
    st.sets(st.sampled_from(sorted(FIELDS)), max_size=2),
)
def test_any_signed_payload_object_gives_a_heartbeat_error_or_itself(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    body = {k: v for k, v in payload(**changes).items() if k not in dropped}
    wire = signed(body)
    outcome = _outcome(wire)
    if outcome == "accepted":
        assert verify_heartbeat(wire, KEYS, {}).as_payload() == body
    assert _outcome(wire, {SHIM: (2**63 - 1, 2**63 - 1)}) != "accepted"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), FIELD_VALUES)
def test_a_signed_heartbeat_with_any_field_changed_is_refused(field: str, value: Any) -> None:
    wire = sign_heartbeat(payload(), KEY.sign)
    original = wire["payload"][field]
    wire["payload"][field] = value
    same = type(value) is type(original) and value == original
    assert (_outcome(wire) == "accepted") == same


IDS = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=128
).filter(lambda text: not any(ch.isspace() for ch in text))
PAYLOADS = st.fixed_dictionaries(
    {
        "shim_id": IDS,
        "hardware_id": IDS,
        "seq": st.integers(1, 2**63 - 1),
        "boot_count": st.integers(1, 2**63 - 1),
        "uptime_s": st.floats(0, 1e10) | st.integers(0, 10**10),
        "sent_at": st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(9999, 12, 31)).map(
            lambda moment: f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
        ),
        "state": st.sampled_from(["ok", "tampered"]),
        "open_session": st.none() | st.just(SESSION),
        "config_sha256": st.binary(min_size=32, max_size=32).map(bytes.hex),
        "software_sha256": st.binary(min_size=32, max_size=32).map(bytes.hex),
    }
)


@settings(max_examples=150, deadline=None)
@given(PAYLOADS, st.randoms(use_true_random=False))
def test_any_valid_payload_round_trips_in_any_key_order(body: dict[str, Any], rng: Any) -> None:
    wire = sign_heartbeat(body, KEY.sign)
    signature = base64.b64decode(wire["sig"])
    Ed25519PublicKey.from_public_bytes(raw_public(KEY)).verify(signature, spec_bytes(body))
    names = list(body)
    rng.shuffle(names)
    shuffled = {"sig": wire["sig"], "payload": {name: body[name] for name in names}}
    assert canonical(shuffled["payload"]) == canonical(body)
    keys = {body["shim_id"]: raw_public(KEY)}
    beat = verify_heartbeat(json.dumps(shuffled, ensure_ascii=rng.random() < 0.5), keys, {})
    assert beat.as_payload() == body
    assert dataclasses.asdict(beat) == body
