"""The TEK/KEK pair: farMFA's one-time-pad scheme, and nothing but the
right KEK opens a session's identity."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorum.kit import one_group
from seeded import drbg
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import open_toc, seal_toc
from shimmfa.quorum.session_keys import IDENTITY_CHARS, new_session_keys, open_identity


def test_the_kek_is_the_pad_that_turns_the_sealed_text_into_the_tek_identity() -> None:
    keys = new_session_keys(drbg(b"kek"))
    pad = base64.b64decode(keys.kek, validate=True)
    assert len(pad) == len(keys.sealed) == IDENTITY_CHARS == 74
    assert pad == drbg(b"kek")(74)  # the pad is the random draw itself
    text = bytes(a ^ b for a, b in zip(keys.sealed, pad, strict=True)).decode()
    assert text.startswith("AGE-SECRET-KEY-1") and keys.tek.startswith("age1")
    identity = open_identity(keys.sealed, keys.kek, keys.tek)
    assert str(identity) == text and str(identity.to_public()) == keys.tek
    toc = one_group()[0]
    assert open_toc(seal_toc(toc, keys.tek), [identity]) == toc


def test_each_session_gets_its_own_identity() -> None:
    first, second = new_session_keys(os.urandom), new_session_keys(os.urandom)
    assert first.tek != second.tek and first.kek != second.kek


def test_another_sessions_kek_or_tek_does_not_open_it() -> None:
    first, second = new_session_keys(os.urandom), new_session_keys(os.urandom)
    for sealed, kek, tek in [
        (first.sealed, second.kek, first.tek),
        (first.sealed, first.kek, second.tek),
        (second.sealed, first.kek, first.tek),
    ]:
        with pytest.raises(QuorumError) as caught:
            open_identity(sealed, kek, tek)
        assert caught.value.reason == "bad_kek"


@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=120).map(lambda b: base64.b64encode(b).decode()),
        st.integers(),
        st.none(),
    )
)
def test_any_other_kek_is_bad_kek_and_says_nothing_of_the_secret(kek: object) -> None:
    keys = _KEYS
    if kek == keys.kek:
        return
    with pytest.raises(QuorumError) as caught:
        open_identity(keys.sealed, kek, keys.tek)
    assert caught.value.reason == "bad_kek"
    assert keys.kek not in str(caught.value)


_KEYS = new_session_keys(os.urandom)


def test_the_kek_and_the_sealed_identity_stay_out_of_the_repr() -> None:
    keys = new_session_keys(os.urandom)
    assert keys.kek not in repr(keys) and repr(keys.sealed) not in repr(keys)


def test_a_short_random_source_is_refused() -> None:
    with pytest.raises(QuorumError, match="74 bytes"):
        new_session_keys(lambda n: bytes(n - 1))
