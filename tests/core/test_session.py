"""Session identifiers (`shimmfa.core.session`): UTC start time with
milliseconds plus a random suffix; unique, sortable by time, safe as a file
name. Expected times come from `datetime`, written out by hand here."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shimmfa.core.session import new_session_id, valid_session_id

# 2026-11-23 10:54:59.123 UTC
NOV_23 = dt.datetime(2026, 11, 23, 10, 54, 59, 123000, tzinfo=dt.UTC).timestamp()
SUFFIX = bytes.fromhex("3f9a1c2b5d7e")

wall_times = st.floats(min_value=0, max_value=4_102_444_800)  # 1970 .. 2100
suffixes = st.binary(min_size=6, max_size=6)


def test_format_is_utc_time_with_milliseconds_and_hex_suffix() -> None:
    assert new_session_id(NOV_23, SUFFIX) == "20261123T105459.123Z-3f9a1c2b5d7e"


def test_time_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "XYZ-14")  # POSIX rule for UTC+14; needs no tzdata
    time.tzset()
    try:
        assert time.localtime(NOV_23).tm_hour != 10  # the zone did change
        assert new_session_id(NOV_23, SUFFIX).startswith("20261123T105459.123Z")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_epoch_start() -> None:
    assert new_session_id(0.0, bytes(6)) == "19700101T000000.000Z-000000000000"


@pytest.mark.parametrize("size", [0, 5, 7, 32])
def test_suffix_must_be_six_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="6 random bytes"):
        new_session_id(NOV_23, bytes(size))


def test_same_millisecond_different_suffixes_are_unique() -> None:
    ids = {new_session_id(NOV_23, os.urandom(6)) for _ in range(1000)}
    assert len(ids) == 1000


@given(when=wall_times, suffix=suffixes)
@settings(max_examples=300)
def test_every_new_id_is_valid_and_names_a_plain_file(when: float, suffix: bytes) -> None:
    session_id = new_session_id(when, suffix)
    assert valid_session_id(session_id)
    assert session_id.isascii()
    assert "/" not in session_id and ".." not in session_id
    assert session_id.endswith(suffix.hex())
    start = dt.datetime.strptime(session_id[:19], "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.UTC)
    assert abs(start.timestamp() - when) < 0.0015


@given(when=wall_times, a=suffixes, b=suffixes)
def test_different_suffixes_give_different_ids(when: float, a: bytes, b: bytes) -> None:
    assert (new_session_id(when, a) == new_session_id(when, b)) == (a == b)


@given(t1=wall_times, t2=wall_times, a=suffixes, b=suffixes)
@settings(max_examples=300)
def test_ids_sort_by_start_time(t1: float, t2: float, a: bytes, b: bytes) -> None:
    first, second = sorted((t1, t2))
    id1, id2 = new_session_id(first, a), new_session_id(second, b)
    assert id1[:20] <= id2[:20]
    if second - first >= 0.002:
        assert id1 < id2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "20261123T105459.123Z-3f9a1c2b5d7e\n",
        "20261123T105459.123Z-3f9a1c2b5d7e/",
        "../20261123T105459.123Z-3f9a1c2b5d7",
        "20261123T105459.123Z-3F9A1C2B5D7E",
        "20261123T105459.123Z-3f9a1c2b5d7",
        "20261123T105459.123Z-3f9a1c2b5d7e0",
        "20261123T105459Z-3f9a1c2b5d7e",
        "20261123 105459.123Z-3f9a1c2b5d7e",
        "\uff12\uff10\uff12\uff16\uff11\uff11\uff12\uff13T105459.123Z-3f9a1c2b5d7e",
        "\u0662026112\u0663T105459.123Z-3f9a1c2b5d7e",
    ],
    ids=repr,
)
def test_invalid_session_ids_are_refused(text: str) -> None:
    assert not valid_session_id(text)


@given(text=st.text(max_size=60))
@settings(max_examples=300)
def test_any_text_that_validates_is_exactly_the_id_shape(text: str) -> None:
    if valid_session_id(text):
        assert len(text) == 33
        assert text.isascii()
        assert text[8] == "T" and text[15] == "." and text[19:21] == "Z-"
        assert all(c in "0123456789abcdef" for c in text[21:])


@given(session_id=st.builds(new_session_id, wall_times, suffixes), tail=st.text(min_size=1))
def test_an_id_with_anything_appended_is_invalid(session_id: str, tail: str) -> None:
    assert not valid_session_id(session_id + tail)
