"""The farMFA Toc (`shimmfa.core.toc`): its JSON form, strict parsing, and the
oracle's side of one group (admitting each Toc, combining a quorum).

The example Toc is farMFA's own (`tests/vectors/farmfa.json`); dealt Tocs
come from `core.toc_deal.deal`, whose shares `tests/core/test_shamir.py`
checks against a naive second implementation. The invariant of each
property test is in its name.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seeded import drbg
from shimmfa.core import shamir
from shimmfa.core.toc import (
    FIELDS,
    MAX_NOTE_CHARS,
    Toc,
    TocGroup,
    TocRejection,
    check_admissible,
    combine_tocs,
    parse_toc,
    quorum_reached,
)
from shimmfa.core.toc_deal import deal
from shimmfa.errors import ShimMfaError, TocError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "farmfa.json").read_text(encoding="utf-8")
)
EXAMPLE = VECTORS["tocs"][0]
SECRET = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - farMFA's published test secret
TOCS = deal(SECRET, ["ann", "bob", "cho", "dan", "eve"], 3, note="pump 7", randbytes=drbg(b"t"))


def reasons(call: Any, *args: Any) -> TocRejection:
    with pytest.raises(TocError) as caught:
        call(*args)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ShimMfaError)
    assert SECRET not in str(caught.value)
    return TocRejection(caught.value.reason)


def as_json_object(toc: Toc, **changes: Any) -> dict[str, Any]:
    obj = toc.as_dict()
    obj.update(changes)
    return obj


# -- the format ---------------------------------------------------------------------------------


def test_farmfa_example_toc_parses_and_writes_back_byte_for_byte() -> None:
    toc = parse_toc(EXAMPLE["json"])
    assert (toc.group_id, toc.group_size, toc.group_threshold, toc.note) == (
        EXAMPLE["group_id"],
        EXAMPLE["group_size"],
        EXAMPLE["group_threshold"],
        "",
    )
    assert len(toc.share) == EXAMPLE["share_bytes"] and len(toc.toc_id) == EXAMPLE["toc_id_bytes"]
    assert not toc.clear
    assert toc.to_json() == EXAMPLE["json"]


def test_to_json_keeps_farmfas_key_order_and_is_compact() -> None:
    text = TOCS[0].to_json()
    pairs = json.loads(text, object_pairs_hook=lambda p: p)
    assert tuple(key for key, _ in pairs) == FIELDS
    assert ": " not in text and ", " not in text and "\n" not in text


def test_note_is_escaped_as_gos_encoding_json_does_and_reads_back() -> None:
    note = "bay <3> & co\u2028next\u2029 é \n"
    toc = replace(TOCS[0], note=note)
    text = toc.to_json()
    for escape in ("\\u003c", "\\u003e", "\\u0026", "\\u2028", "\\u2029", "é", "\\n"):
        assert escape in text
    assert parse_toc(text) == toc


def test_parse_accepts_str_bytes_a_mapping_and_any_key_order() -> None:
    obj = TOCS[1].as_dict()
    shuffled = dict(reversed(list(obj.items())))
    text = json.dumps(shuffled, indent=2)
    for data in (text, text.encode(), bytearray(text.encode()), obj, shuffled):
        assert parse_toc(data) == TOCS[1]


def test_repr_shows_no_share_bytes() -> None:
    text = repr(TOCS[0])
    assert "share" not in text and "toc_id" not in text
    assert base64.b64encode(TOCS[0].share).decode() not in text


def test_a_32_character_secret_gives_33_byte_shares_and_9_byte_toc_ids() -> None:
    assert {len(toc.share) for toc in TOCS} == {33}
    assert {len(toc.toc_id) for toc in TOCS} == {9}


@settings(max_examples=50, deadline=None)
@given(
    note=st.text(max_size=60).filter(lambda s: all(not 0xD800 <= ord(c) <= 0xDFFF for c in s)),
    n=st.integers(2, 9),
    data=st.data(),
)
def test_any_dealt_toc_survives_to_json_then_parse_toc(n: int, note: str, data: Any) -> None:
    t = data.draw(st.integers(2, n))
    for toc in deal(SECRET, n, t, note=note, randbytes=os.urandom):
        assert parse_toc(toc.to_json()) == toc
        assert parse_toc(toc.to_json().encode("utf-8")) == toc


# -- refusals of one Toc ------------------------------------------------------------------------

GOOD = TOCS[0].as_dict()
CLEAR_ID = base64.b64encode(GOOD["group_id"].encode() + b"\x05").decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{", "not valid JSON"),
        ("[" * 8000, "not valid JSON"),
        (b"\xff\xfe", "not UTF-8 text"),
        ("x" * 9000, "longer than 8192 characters"),
        (b" " * 9000, "longer than 8192 bytes"),
        ("[1, 2]", "a Toc is a JSON object, not list"),
        ('"toc"', "a Toc is a JSON object, not str"),
        (42, "expected JSON text, bytes or a mapping, not int"),
        ('{"group_id": "A", "group_id": "B"}', "key 'group_id' appears twice"),
        ('{"group_size": NaN}', "NaN is not a JSON number"),
        ({1: 2}, "every key of a Toc is a string"),
        ({k: v for k, v in GOOD.items() if k != "note"}, r"missing key\(s\): note"),
        ({**GOOD, "ttl": 60}, r"unknown key\(s\): 'ttl'"),
        ({**GOOD, "group_id": "7GCUCI2"}, "group_id must be 8 base32 characters"),
        ({**GOOD, "group_id": "7gcuci2y"}, "group_id must be 8 base32 characters"),
        ({**GOOD, "group_id": "7GCUCI21"}, "group_id must be 8 base32 characters"),
        ({**GOOD, "group_id": 12345678}, "group_id must be 8 base32 characters"),
        ({**GOOD, "group_size": True}, "group_size must be a JSON integer, not bool"),
        ({**GOOD, "group_size": 5.0}, "group_size must be a JSON integer, not float"),
        ({**GOOD, "group_size": "5"}, "group_size must be a JSON integer, not str"),
        ({**GOOD, "group_size": 1, "group_threshold": 1}, "group_size must be 2 to 255, not 1"),
        ({**GOOD, "group_size": 256}, "group_size must be 2 to 255, not 256"),
        ({**GOOD, "group_size": 10**5000}, "group_size must be 2 to 255, not that"),
        ({**GOOD, "group_threshold": 1}, "group_threshold must be 2 to 5, not 1"),
        ({**GOOD, "group_threshold": 6}, "group_threshold must be 2 to 5, not 6"),
        ({**GOOD, "group_threshold": False}, "group_threshold must be a JSON integer, not bool"),
        ({**GOOD, "note": None}, "note must be a string, not NoneType"),
        ({**GOOD, "note": "n" * (MAX_NOTE_CHARS + 1)}, "note must be at most 1024 characters"),
        ({**GOOD, "note": "\ud800"}, "note must be valid Unicode text"),
        ({**GOOD, "share": 7}, "share must be base64 text"),
        ({**GOOD, "share": "QUI"}, "share must be standard base64 with padding"),
        ({**GOOD, "share": "QU-_"}, "share must be standard base64 with padding"),
        ({**GOOD, "share": " " + GOOD["share"]}, "share must be standard base64 with padding"),
        ({**GOOD, "share": "AB=="}, "share is not canonical base64"),
        ({**GOOD, "share": "Bw=="}, "share must be 2 to 257 bytes, not 1"),
        ({**GOOD, "share": base64.b64encode(b"A" * 300).decode()}, "must be 2 to 257 bytes"),
        ({**GOOD, "share": "QUEA"}, "share has x tag 0"),
        ({**GOOD, "toc_id": "QUFBQQ=="}, "toc_id must be 9 bytes, not 4"),
        ({**GOOD, "toc_id": "QUFBQUFBQUEA"}, "toc_id has x tag 0"),
        ({**GOOD, "toc_id": CLEAR_ID}, "a clear Toc .* says threshold 2"),
    ],
)
def test_every_malformed_toc_is_refused_with_a_clear_message(data: Any, message: str) -> None:
    with pytest.raises(TocError, match=message) as caught:
        parse_toc(data)
    assert caught.value.reason == TocRejection.MALFORMED
    assert str(caught.value).startswith("malformed Toc: ")


def test_constructing_a_toc_validates_it_too() -> None:
    with pytest.raises(TocError, match="share must be bytes, not str"):
        replace(TOCS[0], share="QUJD")  # type: ignore[arg-type]


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300) | json_values())
def test_any_input_gives_a_toc_or_a_malformed_tocerror_and_nothing_else(data: Any) -> None:
    try:
        parse_toc(data)
    except TocError as exc:
        assert exc.reason == TocRejection.MALFORMED


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=json_values())
def test_any_single_field_replaced_by_any_json_value_gives_only_tocerror(
    field: str, value: Any
) -> None:
    for data in (as_json_object(TOCS[0], **{field: value}), json.dumps({**GOOD, field: value})):
        try:
            parse_toc(data)
        except TocError as exc:
            assert exc.reason == TocRejection.MALFORMED


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(TOCS[0].to_json()) - 1), char=st.characters())
def test_any_one_character_changed_gives_a_toc_or_a_malformed_tocerror(
    position: int, char: str
) -> None:
    text = TOCS[0].to_json()
    try:
        parse_toc(text[:position] + char + text[position + 1 :])
    except TocError as exc:
        assert exc.reason == TocRejection.MALFORMED


# -- one group: admit and combine ---------------------------------------------------------------


def test_every_t_subset_combines_to_the_secret_and_every_smaller_one_is_too_few() -> None:
    for size in range(1, len(TOCS) + 1):
        for subset in itertools.combinations(TOCS, size):
            if size >= 3:
                assert combine_tocs(subset) == SECRET
                assert combine_tocs(subset[::-1]) == SECRET
            else:
                assert reasons(combine_tocs, subset) is TocRejection.TOO_FEW


def test_toc_ids_catch_fewer_tocs_than_the_real_threshold_whatever_the_tocs_claim() -> None:
    # Every pair of a 3-of-5 deal, each Toc rewritten to claim threshold 2.
    for pair in itertools.combinations(TOCS, 2):
        forged = [replace(toc, group_threshold=2) for toc in pair]
        assert reasons(combine_tocs, forged) is TocRejection.MISMATCH
        assert shamir.combine([toc.share for toc in forged]) != SECRET.encode()


def test_duplicates_are_found_by_share_x_tag_not_by_bytes() -> None:
    twin = replace(TOCS[0], note="re-encrypted, other note")
    assert twin.to_json() != TOCS[0].to_json()
    assert reasons(combine_tocs, [TOCS[0], TOCS[1], twin]) is TocRejection.DUPLICATE
    altered = replace(TOCS[0], share=bytes(33 - 1) + TOCS[0].share[-1:])
    assert reasons(check_admissible, altered, [TOCS[0]]) is TocRejection.DUPLICATE


def test_tocs_of_another_group_size_or_threshold_are_wrong_group() -> None:
    other = deal(SECRET, 5, 3, randbytes=os.urandom)
    assert reasons(combine_tocs, [TOCS[0], TOCS[1], other[2]]) is TocRejection.WRONG_GROUP
    bigger = replace(TOCS[2], group_size=6)
    assert reasons(combine_tocs, [TOCS[0], TOCS[1], bigger]) is TocRejection.WRONG_GROUP
    assert reasons(check_admissible, other[0], TOCS[:1]) is TocRejection.WRONG_GROUP


def test_tocs_of_two_deals_under_one_group_id_do_not_combine() -> None:
    mine = TOCS[:2]
    used = {toc.x_tag for toc in mine} | {toc.toc_id[-1] for toc in mine}
    other = deal(SECRET, 5, 3, randbytes=os.urandom)
    stranger = next(t for t in other if t.x_tag not in used and t.toc_id[-1] not in used)
    mixed = [*mine, replace(stranger, group_id=TOCS[0].group_id)]
    assert reasons(combine_tocs, mixed) is TocRejection.MISMATCH


def test_an_altered_share_is_caught_as_not_base32() -> None:
    flipped = bytes(byte ^ 0xFF for byte in TOCS[2].share[:-1]) + TOCS[2].share[-1:]
    tocs = [TOCS[0], TOCS[1], replace(TOCS[2], share=flipped)]
    assert reasons(combine_tocs, tocs) is TocRejection.MISMATCH


def test_a_share_of_a_longer_secret_is_refused_before_combining() -> None:
    longer = replace(TOCS[1], share=TOCS[1].share[:-1] + b"A" + TOCS[1].share[-1:])
    assert reasons(check_admissible, longer, TOCS[:1]) is TocRejection.MISMATCH


def test_a_repeated_toc_id_x_tag_is_a_forgery() -> None:
    forged = replace(TOCS[1], toc_id=TOCS[1].toc_id[:-1] + TOCS[0].toc_id[-1:])
    assert reasons(check_admissible, forged, TOCS[:1]) is TocRejection.MISMATCH


def test_the_oracle_admits_toc_by_toc_against_toc_zero_and_the_dealt_record() -> None:
    accepted = [TOCS[4]]
    for toc in TOCS[1:3]:
        assert not quorum_reached(accepted)
        check_admissible(toc, accepted)
        accepted.append(toc)
    assert quorum_reached(accepted)
    assert combine_tocs(accepted) == SECRET
    dealt = TOCS[0].group
    claims_two = replace(TOCS[0], group_threshold=2)
    assert reasons(check_admissible, claims_two, [], [dealt]) is TocRejection.WRONG_GROUP
    assert reasons(combine_tocs, [replace(t, group_threshold=2) for t in TOCS[:3]], dealt) is (
        TocRejection.WRONG_GROUP
    )
    assert combine_tocs(TOCS[:3], dealt) == SECRET
    assert not quorum_reached([])


def test_a_secret_that_is_not_base32_is_refused_even_when_the_toc_ids_agree() -> None:
    group_id = TOCS[0].group_id
    shares = shamir.split(b"not base32!", 2, 2, os.urandom)
    ids = shamir.split(group_id.encode(), 2, 2, os.urandom)
    tocs = [Toc(group_id, 2, 2, "", s, i) for s, i in zip(shares, ids, strict=True)]
    assert reasons(combine_tocs, tocs) is TocRejection.MISMATCH


def test_combine_refuses_no_tocs_and_things_that_are_not_tocs() -> None:
    assert reasons(combine_tocs, []) is TocRejection.TOO_FEW
    assert reasons(combine_tocs, [TOCS[0], GOOD, TOCS[1]]) is TocRejection.MALFORMED


def test_toc_group_quorum_is_the_threshold_or_one_for_a_clear_group() -> None:
    assert TocGroup("AAAAAAAA", 5, 3).quorum == 3
    assert TocGroup("AAAAAAAA", 2, 2, clear=True).quorum == 1
