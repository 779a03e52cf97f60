"""Sealed Tocs: interop both ways with Debian's `age`, and clear refusals
for a wrong identity, what is not armor, and garbage."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorum.kit import age_decrypt, age_encrypt, age_keygen, needs_age, one_group, refusal
from shimmfa.core.toc import parse_toc
from shimmfa.errors import QuorumError, TocError
from shimmfa.quorum.age_tocs import (
    ARMOR_BEGIN,
    ARMOR_END,
    SealProblem,
    armored_payload,
    identity_file_text,
    new_identity,
    open_toc,
    parse_identity,
    parse_recipient,
    read_identity_file,
    seal,
    seal_toc,
)


@needs_age
def test_a_sealed_toc_opens_with_debians_age(tmp_path: Path) -> None:
    recipient = age_keygen(key := tmp_path / "holder.key")
    toc = one_group()[0]
    sealed = seal_toc(toc, recipient)
    assert sealed.startswith(ARMOR_BEGIN + "\n") and sealed.rstrip().endswith(ARMOR_END)
    assert all(len(line) <= 64 for line in sealed.splitlines())
    opened = age_decrypt(sealed, key)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout == toc.to_json()


@needs_age
def test_a_toc_sealed_by_debians_age_opens_with_ours(tmp_path: Path) -> None:
    age_keygen(key := tmp_path / "holder.key")
    identities = read_identity_file(key)
    toc = one_group()[1]
    recipient = str(identities[0].to_public())
    sealed = age_encrypt(toc.to_json() + "\n", recipient)  # echo adds the newline
    assert open_toc(sealed, identities) == toc


@needs_age
def test_our_identity_files_work_with_age_and_theirs_with_us(tmp_path: Path) -> None:
    identity = new_identity()
    (ours := tmp_path / "ours.key").write_text(identity_file_text(identity, 1_700_000_000))
    sealed = seal(b"hello", identity.to_public())
    assert age_decrypt(sealed, ours).stdout == "hello"
    assert "# public key: " + str(identity.to_public()) in ours.read_text()


def test_a_toc_for_another_identity_is_wrong_identity() -> None:
    sealed = seal_toc(one_group()[0], new_identity().to_public())
    assert refusal(lambda: open_toc(sealed, [new_identity()])) == SealProblem.WRONG_IDENTITY


@pytest.mark.parametrize(
    "text",
    ["", "hello", '{"group_id": "AAAAAAAA"}', "age-encryption.org/v1\n", 42, None, b"\xff"],
    ids=repr,
)
def test_what_is_not_armor_is_not_armor(text: object) -> None:
    assert refusal(lambda: armored_payload(text)) == SealProblem.NOT_ARMOR


def test_binary_age_is_not_armor() -> None:
    identity = new_identity()
    payload = armored_payload(seal(b"x", identity.to_public()))
    assert refusal(lambda: open_toc(payload, [identity])) == SealProblem.NOT_ARMOR


def armor(payload: bytes) -> str:
    text = base64.b64encode(payload).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)] or [""]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


@pytest.mark.parametrize(
    "text",
    [
        armor(b"not an age file at all"),
        armor(b"age-encryption.org/v1\n-> X25519 garbage\n--- AAAA\n" + bytes(40)),
        ARMOR_BEGIN + "\n!!!!\n" + ARMOR_END,
        ARMOR_BEGIN + "\nYWdl\nYWdl\n" + ARMOR_END,  # a short line before the last
    ],
    ids=["not-age", "broken-header", "not-base64", "short-line"],
)
def test_garbage_inside_the_armor_is_undecryptable(text: str) -> None:
    assert refusal(lambda: open_toc(text, [new_identity()])) == SealProblem.UNDECRYPTABLE


def test_a_cut_or_altered_toc_is_undecryptable() -> None:
    identity = new_identity()
    payload = bytearray(armored_payload(seal_toc(one_group()[0], identity.to_public())))
    payload[-5] ^= 1
    assert refusal(lambda: open_toc(armor(bytes(payload)), [identity])) == (
        SealProblem.UNDECRYPTABLE
    )
    assert refusal(lambda: open_toc(armor(bytes(payload[:-20])), [identity])) == (
        SealProblem.UNDECRYPTABLE
    )


def test_a_sealed_plaintext_that_is_no_toc_is_a_toc_error() -> None:
    identity = new_identity()
    with pytest.raises(TocError):
        open_toc(seal(b'{"hello": 1}', identity.to_public()), [identity])


def test_crlf_and_surrounding_whitespace_are_accepted() -> None:
    identity = new_identity()
    toc = one_group()[0]
    sealed = "\n  " + seal_toc(toc, identity.to_public()).replace("\n", "\r\n") + "\n\n"
    assert open_toc(sealed, [identity]) == toc


@pytest.mark.parametrize(
    "text", ["age1", "age1" + "q" * 58, "ssh-ed25519 AAAA", "", "AGE-SECRET-KEY-1" + "Q" * 58]
)
def test_a_bad_recipient_is_refused_by_name(text: str) -> None:
    assert refusal(lambda: parse_recipient(text)) == SealProblem.BAD_RECIPIENT


def test_a_bad_identity_is_refused_without_quoting_it(tmp_path: Path) -> None:
    secret_looking = "AGE-SECRET-KEY-1" + "Q" * 58
    with pytest.raises(QuorumError) as caught:
        parse_identity(secret_looking)
    assert caught.value.reason == SealProblem.BAD_IDENTITY
    assert secret_looking not in str(caught.value)
    (bad := tmp_path / "bad.key").write_text("# comment\n" + secret_looking + "\n")
    with pytest.raises(QuorumError, match="line 2") as caught:
        read_identity_file(bad)
    assert secret_looking not in str(caught.value)
    assert refusal(lambda: read_identity_file(tmp_path / "missing.key")) == SealProblem.BAD_IDENTITY
    (empty := tmp_path / "empty.key").write_text("# nothing\n")
    assert refusal(lambda: read_identity_file(empty)) == SealProblem.BAD_IDENTITY


def test_identities_stay_out_of_reprs() -> None:
    identity = new_identity()
    assert str(identity) not in repr(identity)
    assert str(identity) not in repr(parse_toc(one_group()[0].to_json()))


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_input_is_refused_with_a_quorum_error_and_nothing_else(data: str | bytes) -> None:
    """Any text or bytes -> a QuorumError (never another exception)."""
    inner = data if isinstance(data, str) else base64.b64encode(data).decode()
    for candidate in (data, "\n".join([ARMOR_BEGIN, inner, ARMOR_END])):
        try:
            armored_payload(candidate)
        except QuorumError:
            pass


_IDENTITY = new_identity()
_SEALED = seal_toc(one_group()[0], _IDENTITY.to_public())


@given(st.integers(0, len(_SEALED) - 1), st.characters(codec="ascii"))
def test_a_sealed_toc_altered_anywhere_opens_to_the_toc_or_is_refused(
    where: int, char: str
) -> None:
    """Any one character changed -> the same Toc (a change age ignores) or a
    QuorumError/TocError; never another exception, never another Toc."""
    altered = _SEALED[:where] + char + _SEALED[where + 1 :]
    try:
        toc = open_toc(altered, [_IDENTITY])
    except (QuorumError, TocError):
        return
    assert toc == open_toc(_SEALED, [_IDENTITY])
