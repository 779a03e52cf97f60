"""Technician bundles as the shim checks them (`shimmfa.core.bundle`): the
signature against the pinned key over the fixed context, the age
ciphertext opened with the shim's identity, the shim ID, a version above
the one held, and every field of every technician. Bundles here are made
the way central makes them (pyrage armored to the shim's recipient,
Ed25519 over `CONTEXT + bundle`), one also by Debian's `age` CLI; the
shim's side is tested against the real central in tests/shim/reporting."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from typing import Any

import pyrage
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrage import x25519

from shimmfa.core.bundle import (
    CONTEXT,
    BundleRejection,
    TechnicianBundle,
    open_bundle,
    pinned_key,
)
from shimmfa.errors import BundleError

CENTRAL = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
FORGER = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
SHIM = "icu-pump-7"
SECRET = base64.b32encode(bytes(range(20))).decode()  # 160 bits, as central makes them
IDENTITY = x25519.Identity.generate()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_text(key: Ed25519PrivateKey) -> str:
    return "ed25519:" + base64.b64encode(raw(key)).decode()


def technician(tid: str = "ada@vendor", **changes: Any) -> dict[str, Any]:
    entry = {
        "technician_id": tid,
        "totp_secret": SECRET,
        "algorithm": "SHA1",
        "digits": 6,
        "period": 30,
        "roles": [],
        "name": "Ada Field",
        "company": "Pumps Inc.",
    }
    entry.update(changes)
    return entry


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "shim_id": SHIM,
        "version": 1_700_000_000_000,
        "issued_at": 1_700_000_000.5,
        "technicians": [technician()],
    }
    doc.update(changes)
    return doc


def seal(
    doc: Any,
    *,
    key: Ed25519PrivateKey = CENTRAL,
    recipient: str | None = None,
    plain: bytes | None = None,
) -> dict[str, str]:
    """Central's answer for `doc`: armored to the shim, signed by `key`."""
    body = plain if plain is not None else json.dumps(doc).encode()
    target = x25519.Recipient.from_str(recipient or str(IDENTITY.to_public()))
    armored = pyrage.encrypt(body, [target], armored=True).decode("ascii")
    sig = base64.b64encode(key.sign(CONTEXT + armored.encode("ascii"))).decode()
    return {"bundle": armored, "sig": sig, "signed_by": key_text(key)}


def opened(answer: Any, last_version: int = 0) -> TechnicianBundle:
    return open_bundle(
        answer, pinned=raw(CENTRAL), identity=IDENTITY, shim_id=SHIM, last_version=last_version
    )


def refused(answer: Any, last_version: int = 0) -> BundleError:
    with pytest.raises(BundleError) as caught:
        opened(answer, last_version)
    assert SECRET not in str(caught.value)  # never a secret in a message
    return caught.value


def test_a_bundle_from_central_opens_with_every_field() -> None:
    bundle = opened(seal(document()))
    assert (bundle.shim_id, bundle.version, bundle.issued_at) == (
        SHIM,
        1_700_000_000_000,
        1_700_000_000.5,
    )
    (ada,) = bundle.technicians
    assert (ada.technician_id, ada.totp_secret, ada.algorithm, ada.digits, ada.period) == (
        "ada@vendor",
        SECRET,
        "SHA1",
        6,
        30,
    )
    assert (ada.roles, ada.name, ada.company) == ((), "Ada Field", "Pumps Inc.")
    record = ada.record()
    assert (record.technician_id, record.totp_secret, record.period) == ("ada@vendor", SECRET, 30)
    assert SECRET not in repr(bundle)


@pytest.mark.skipif(shutil.which("age") is None, reason="needs Debian's age")
def test_a_bundle_encrypted_by_the_age_command_line_opens() -> None:
    plain = json.dumps(document()).encode()
    made = subprocess.run(
        ["age", "-a", "-r", str(IDENTITY.to_public())],
        input=plain,
        capture_output=True,
        check=True,
    )
    armored = made.stdout.decode("ascii")
    sig = base64.b64encode(CENTRAL.sign(CONTEXT + armored.encode())).decode()
    answer = {"bundle": armored, "sig": sig, "signed_by": key_text(CENTRAL)}
    assert opened(answer).technicians[0].technician_id == "ada@vendor"


def test_a_forged_signature_is_refused_even_if_signed_by_names_the_forger() -> None:
    error = refused(seal(document(), key=FORGER))
    assert error.reason == BundleRejection.BAD_SIGNATURE
    assert key_text(CENTRAL) in str(error)  # says which key is pinned, for a rotated key


def test_a_tampered_ciphertext_or_a_signature_without_the_context_is_refused() -> None:
    answer = seal(document())
    lines = answer["bundle"].splitlines()
    middle = lines[1]
    lines[1] = ("B" if middle[5] != "B" else "C").join((middle[:5], middle[6:]))
    tampered = {**answer, "bundle": "\n".join(lines) + "\n"}
    assert refused(tampered).reason == BundleRejection.BAD_SIGNATURE
    bare = base64.b64encode(CENTRAL.sign(answer["bundle"].encode())).decode()
    assert refused({**answer, "sig": bare}).reason == BundleRejection.BAD_SIGNATURE


def test_a_bundle_for_another_recipient_is_undecryptable() -> None:
    other = str(x25519.Identity.generate().to_public())
    assert refused(seal(document(), recipient=other)).reason == BundleRejection.UNDECRYPTABLE


def test_a_bundle_for_another_shim_is_refused() -> None:
    error = refused(seal(document(shim_id="other-shim")))
    assert error.reason == BundleRejection.WRONG_SHIM
    assert "other-shim" in str(error)


@pytest.mark.parametrize("held", [1_700_000_000_000, 1_800_000_000_000])
def test_a_version_at_or_below_the_one_held_is_a_rollback(held: int) -> None:
    error = refused(seal(document()), last_version=held)
    assert error.reason == BundleRejection.NOT_NEWER
    assert opened(seal(document()), last_version=held - 1_000_000_000_000).version > 0


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        "text",
        {},
        {"bundle": "x", "sig": "y"},
        {"bundle": 1, "sig": "y", "signed_by": "z"},
        {"bundle": "not armored", "sig": base64.b64encode(bytes(64)).decode(), "signed_by": ""},
        {"bundle": "-----BEGIN AGE ENCRYPTED FILE-----\n", "sig": "not base64!", "signed_by": ""},
        {"bundle": "-----BEGIN AGE ENCRYPTED FILE-----\n", "sig": "AAAA", "signed_by": ""},
        {"bundle": "é-----BEGIN AGE ENCRYPTED FILE-----", "sig": "AA==", "signed_by": ""},
        {"bundle": "a", "sig": "b", "signed_by": "c", "extra": 1},
    ],
)
def test_garbage_is_malformed(answer: Any) -> None:
    assert refused(answer).reason == BundleRejection.MALFORMED


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (document(version=True), "version"),
        (document(version=0), "version"),
        (document(version=-5), "version"),
        (document(version=1.5), "version"),
        (document(version=1 << 63), "version"),
        (document(issued_at="now"), "issued_at"),
        (document(issued_at=float("nan")), "issued_at"),
        (document(technicians={}), "technicians"),
        (document(extra=1), "exactly"),
        ({"shim_id": SHIM, "version": 5, "technicians": []}, "exactly"),
        (document(technicians=[technician(), technician()]), "twice"),
        (document(technicians=[technician("has space")]), "technician_id"),
        (document(technicians=[technician("")]), "technician_id"),
        (document(technicians=[technician("x" * 129)]), "technician_id"),
        (document(technicians=[technician(7)]), "technician_id"),
        (document(technicians=[technician(totp_secret="JBSWY3DPEHPK3PXP")]), "128"),  # noqa: S106
        (document(technicians=[technician(totp_secret="not base32!")]), "base32"),  # noqa: S106
        (document(technicians=[technician(totp_secret=None)]), "base32"),
        (document(technicians=[technician(algorithm="MD5")]), "algorithm"),
        (document(technicians=[technician(digits=7)]), "digits"),
        (document(technicians=[technician(digits=True)]), "digits"),
        (document(technicians=[technician(period=5)]), "period"),
        (document(technicians=[technician(period=30.0)]), "period"),
        (document(technicians=[technician(roles=["root"])]), "roles"),
        (document(technicians=[technician(roles=["admin", "admin"])]), "roles"),
        (document(technicians=[technician(roles="admin")]), "roles"),
        (document(technicians=[technician(name="a\nb")]), "name"),
        (document(technicians=[technician(company=None)]), "company"),
        (document(technicians=[{**technician(), "factors": []}]), "exactly"),
        (document(technicians=["ada"]), "exactly"),
        ([document()], "exactly"),
    ],
)
def test_a_signed_bundle_with_a_bad_field_is_invalid(doc: Any, says: str) -> None:
    error = refused(seal(doc))
    assert error.reason == BundleRejection.INVALID
    assert says in str(error)


def test_a_plaintext_that_is_not_json_is_invalid() -> None:
    assert refused(seal(None, plain=b"\xff\xfe not json")).reason == BundleRejection.INVALID


def test_the_pinned_key_is_ed25519_text() -> None:
    assert pinned_key(key_text(CENTRAL)) == raw(CENTRAL)
    for bad in (
        "",
        "ed25519:",
        "ed25519:AAAA",
        "rsa:" + key_text(CENTRAL)[8:],
        key_text(CENTRAL)[8:],
    ):
        with pytest.raises(ValueError, match="ed25519:<base64>"):
            pinned_key(bad)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(answer=JSON)
def test_any_answer_gives_a_bundle_error_and_no_other_exception(answer: Any) -> None:
    with pytest.raises(BundleError):
        opened(answer)


def _entries() -> st.SearchStrategy[dict[str, Any]]:
    values = {
        "technician_id": st.text(max_size=10) | st.integers(),
        "totp_secret": st.sampled_from([SECRET, "AAAA", "", "a b c d e f g h i j k l m n o p"])
        | st.text(max_size=40),
        "algorithm": st.sampled_from(["SHA1", "SHA256", "SHA512", "sha1", ""]),
        "digits": st.sampled_from([6, 8, 7, "6", None]),
        "period": st.integers(-1, 400) | st.floats(allow_nan=True),
        "roles": st.lists(st.sampled_from(["admin", "x"]), max_size=3),
        "name": st.text(max_size=10),
        "company": st.text(max_size=10),
    }
    return st.fixed_dictionaries({}, optional=values)


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(_entries(), max_size=4),
    version=st.integers(-2, 3) | st.booleans() | st.floats(),
    issued_at=st.floats() | st.integers() | st.none(),
)
def test_any_signed_plaintext_is_a_checked_bundle_or_a_bundle_error(
    entries: list[dict[str, Any]], version: Any, issued_at: Any
) -> None:
    answer = seal(document(technicians=entries, version=version, issued_at=issued_at))
    try:
        bundle = opened(answer)
    except BundleError as exc:
        assert exc.reason in set(BundleRejection)
        return
    assert bundle.version > 0
    ids = [t.technician_id for t in bundle.technicians]
    assert len(ids) == len(set(ids))
    for entry in bundle.technicians:
        assert entry.digits in (6, 8) and 10 <= entry.period <= 300
