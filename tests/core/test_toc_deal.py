"""Dealing Tocs (`shimmfa.core.toc_deal`): one farMFA group, and the AND of
several groups ("2 of clinical AND 1 of infosec").

Every dealt Toc is checked as farMFA would see it: it parses as a Toc, and
any quorum of its group combines with the plain Vault arithmetic. The AND
construction is checked for what it promises: every choice of a quorum per
group gives the secret; a set missing a group gets nothing (an error with
the dealt record, and a text that is not the secret without it); and,
exhaustively for a two-symbol secret, one group's piece is uniform whatever
the secret.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seeded import drbg
from shimmfa.core import shamir
from shimmfa.core.toc import Toc, TocGroup, TocRejection, combine_tocs, parse_toc
from shimmfa.core.toc_deal import MAX_GROUPS, combine_groups, deal, deal_groups
from shimmfa.errors import DealError, ShimMfaError, TocError

SECRET = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - farMFA's published test secret
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
GROUPS: dict[str, tuple[Sequence[str] | int, int]] = {
    "clinical": (["ann", "bea", "cai"], 2),
    "infosec": (["ivan", "iris"], 1),
    "biomed": (4, 2),
}


def quorums(tocs: Sequence[Toc], quorum: int) -> Iterator[tuple[Toc, ...]]:
    """Every subset of `tocs` that reaches `quorum`."""
    for size in range(quorum, len(tocs) + 1):
        yield from itertools.combinations(tocs, size)


def record(dealt: Mapping[str, Sequence[Toc]]) -> list[TocGroup]:
    return [tocs[0].group for tocs in dealt.values()]


def refusal(exc_type: type[Exception], call: Callable[..., object], *args: Any, **kw: Any) -> str:
    with pytest.raises(exc_type) as caught:
        call(*args, **kw)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ShimMfaError)
    assert SECRET not in str(caught.value)
    return str(caught.value)


# -- one group: farMFA's deal --------------------------------------------------------------------


def test_one_toc_per_player_all_of_one_group_with_distinct_x_tags() -> None:
    tocs = deal(SECRET, ["ann", "bob", "cho", "dan"], 3, note="pump 7", randbytes=os.urandom)
    assert len(tocs) == 4
    assert {toc.group for toc in tocs} == {TocGroup(tocs[0].group_id, 4, 3)}
    assert len(tocs[0].group_id) == 8 and base64.b32decode(tocs[0].group_id)
    assert len({toc.x_tag for toc in tocs}) == 4 and len({t.toc_id[-1] for t in tocs}) == 4
    assert {toc.note for toc in tocs} == {"pump 7"}
    assert not any(toc.clear for toc in tocs)
    assert deal(SECRET, 4, 3, randbytes=drbg(b"x")) == deal(SECRET, 4, 3, randbytes=drbg(b"x"))


def test_a_dealt_group_is_what_farmfa_combines() -> None:
    tocs = deal(SECRET, 5, 3, randbytes=os.urandom)
    for subset in itertools.combinations(tocs, 3):
        parsed = [parse_toc(toc.to_json()) for toc in subset]
        assert shamir.combine([toc.share for toc in parsed]) == SECRET.encode()
        assert shamir.combine([toc.toc_id for toc in parsed]) == tocs[0].group_id.encode()


@settings(max_examples=40, deadline=None)
@given(
    secret=st.integers(1, 40).map(lambda n: base64.b32encode(os.urandom(n)).decode()),
    n=st.integers(2, 12),
    data=st.data(),
)
def test_any_base32_secret_and_t_of_n_round_trips(secret: str, n: int, data: Any) -> None:
    t = data.draw(st.integers(2, n))
    tocs = deal(secret, n, t, randbytes=os.urandom)
    chosen = data.draw(st.permutations(tocs))[: data.draw(st.integers(t, n))]
    assert combine_tocs(chosen) == secret


@pytest.mark.parametrize(
    ("secret", "players", "threshold", "message"),
    [
        (SECRET, 3, 1, "threshold cannot be lower than 2"),
        (SECRET, ["a", "b"], 3, "threshold cannot be higher than the number of players"),
        ("", 3, 2, "invalid TOTP secret: the secret must be 1 to 256 characters, not 0"),
        ("A" * 264, 3, 2, "invalid TOTP secret: the secret must be 1 to 256 characters"),
        (SECRET.lower(), 3, 2, "invalid TOTP secret: the secret must be upper-case base32"),
        ("HXDM VJEC", 3, 2, "invalid TOTP secret: the secret must be upper-case base32"),
        ("HXDMVJE1", 3, 2, "invalid TOTP secret: the secret must be upper-case base32"),
        ("HXD", 3, 2, r"invalid TOTP secret: the secret's length \(3 characters, 0 '='\)"),
        ("HX=", 3, 2, r"invalid TOTP secret: the secret's length \(2 characters, 1 '='\)"),
        ("========", 3, 2, "invalid TOTP secret: the secret's length"),
        (b"HXDMVJEC", 3, 2, "invalid TOTP secret: the secret must be text, not bytes"),
        (SECRET, 0, 2, "the number of players must be 1 to 255"),
        (SECRET, 256, 2, "the number of players must be 1 to 255"),
        (SECRET, "ann", 2, "players must be a list of names or a count"),
        (SECRET, True, 2, "players must be a list of names or a count"),
        (SECRET, ["ann", "ann"], 2, "player names must be unique"),
        (SECRET, ["ann", ""], 2, "every player needs a name"),
        (SECRET, 3, 2.0, "threshold must be an integer, not float"),
    ],
)
def test_deal_refuses_with_farmfas_dealer_messages(
    secret: Any, players: Any, threshold: Any, message: str
) -> None:
    assert re.search(
        message, refusal(DealError, deal, secret, players, threshold, randbytes=os.urandom)
    )


def test_deal_refuses_a_note_farmfa_tocs_cannot_carry_and_a_short_random_source() -> None:
    assert "at most 1024" in refusal(
        DealError, deal, SECRET, 3, 2, note="n" * 1025, randbytes=os.urandom
    )
    assert "randbytes(5)" in refusal(DealError, deal, SECRET, 3, 2, randbytes=lambda n: b"")


def test_padded_and_unpadded_secrets_of_every_base32_length_are_dealt() -> None:
    for size in range(1, 12):
        text = base64.b32encode(os.urandom(size)).decode()
        for secret in (text, text.rstrip("=")):
            assert combine_tocs(deal(secret, 2, 2, randbytes=os.urandom)) == secret


# -- AND across groups ---------------------------------------------------------------------------


DEALT = deal_groups(SECRET, GROUPS, note="pump 7", randbytes=drbg(b"and"))
RECORD = record(DEALT)


def test_each_group_gets_its_own_group_id_players_and_farmfa_valid_tocs() -> None:
    assert list(DEALT) == list(GROUPS)
    assert [len(tocs) for tocs in DEALT.values()] == [3, 2, 4]
    assert len({group.group_id for group in RECORD}) == 3
    assert RECORD[0] == TocGroup(RECORD[0].group_id, 3, 2)
    assert RECORD[1] == TocGroup(RECORD[1].group_id, 2, 2, clear=True)
    assert RECORD[2] == TocGroup(RECORD[2].group_id, 4, 2)
    for tocs in DEALT.values():
        for toc in tocs:
            assert parse_toc(toc.to_json()) == toc and toc.note == "pump 7"
            assert len(toc.share) == len(SECRET) + 1


def test_every_combination_of_one_quorum_per_group_gives_the_secret() -> None:
    per_group = [
        list(quorums(tocs, group.quorum))
        for tocs, group in zip(DEALT.values(), RECORD, strict=True)
    ]
    combos = list(itertools.product(*per_group))
    assert len(combos) == 4 * 3 * 11
    for combo in combos:
        tocs = [toc for chosen in combo for toc in chosen]
        assert combine_groups(tocs, RECORD) == SECRET
        assert combine_groups(tocs[::-1], RECORD[::-1]) == SECRET


def test_no_group_alone_and_no_set_missing_a_group_gets_the_secret() -> None:
    names = list(DEALT)
    for size in range(1, len(names)):
        for present in itertools.combinations(range(len(names)), size):
            tocs = [toc for i in present for toc in DEALT[names[i]]]
            with pytest.raises(TocError) as caught:
                combine_groups(tocs, RECORD)
            assert caught.value.reason == TocRejection.TOO_FEW
            # Pretending the deal had only these groups gives a base32 text, not the secret.
            partial = combine_groups(tocs, [RECORD[i] for i in present])
            assert partial != SECRET and len(partial) == len(SECRET)
            assert base64.b32decode(partial)


def test_one_group_through_farmfas_arithmetic_gets_a_valid_but_useless_secret() -> None:
    clinical, infosec, _ = DEALT.values()
    piece = shamir.combine([toc.share for toc in clinical[:2]]).decode()
    assert piece == combine_tocs(clinical[:2]) != SECRET
    # Two clear Tocs combine under farMFA's rules to the piece they hold.
    assert shamir.combine([toc.share for toc in infosec]) == infosec[0].share[:-1]
    assert shamir.combine([toc.toc_id for toc in infosec]) == infosec[0].group_id.encode()
    assert combine_tocs(infosec[:1]) == infosec[0].share[:-1].decode() != SECRET


def test_below_quorum_in_any_group_is_refused_even_with_every_other_group_complete() -> None:
    groups = list(DEALT.values())
    for index, (tocs, group) in enumerate(zip(groups, RECORD, strict=True)):
        others = [toc for i, full in enumerate(groups) if i != index for toc in full]
        for size in range(group.quorum):
            for short in itertools.combinations(tocs, size):
                with pytest.raises(TocError) as caught:
                    combine_groups([*others, *short], RECORD)
                assert caught.value.reason == TocRejection.TOO_FEW


def test_a_toc_outside_the_record_or_a_forged_clear_toc_is_wrong_group() -> None:
    clinical, infosec, biomed = DEALT.values()
    stranger = deal(SECRET, 3, 2, randbytes=os.urandom)[0]
    with pytest.raises(TocError) as caught:
        combine_groups([*clinical, *infosec, *biomed, stranger], RECORD)
    assert caught.value.reason == TocRejection.WRONG_GROUP
    # One clinical holder dressing their Toc up as a clear (1-of-n) Toc:
    fake = Toc(
        clinical[0].group_id, 3, 2, "", clinical[0].share, clinical[0].group_id.encode() + b"\x01"
    )
    with pytest.raises(TocError) as caught:
        combine_groups([fake, *infosec, *biomed], RECORD)
    assert caught.value.reason == TocRejection.WRONG_GROUP


def test_a_one_of_one_group_says_size_two_and_its_one_toc_releases_its_piece() -> None:
    dealt = deal_groups(SECRET, {"clinical": (2, 2), "ciso": (["ciso"], 1)}, randbytes=os.urandom)
    (ciso,) = dealt["ciso"]
    assert ciso.clear and (ciso.group_size, ciso.group_threshold) == (2, 2)
    assert combine_groups([*dealt["clinical"], ciso], record(dealt)) == SECRET


def test_one_group_through_deal_groups_is_a_plain_farmfa_deal() -> None:
    (tocs,) = deal_groups(SECRET, {"all": (3, 2)}, randbytes=os.urandom).values()
    assert combine_tocs(tocs[:2]) == SECRET
    assert combine_groups(tocs[1:], [tocs[0].group]) == SECRET


@settings(max_examples=25, deadline=None)
@given(
    secret=st.integers(5, 20).map(lambda n: base64.b32encode(os.urandom(n)).decode()),
    specs=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=2, max_size=4),
)
def test_any_and_deal_round_trips_and_no_proper_subset_of_groups_gives_the_secret(
    secret: str, specs: list[tuple[int, int]]
) -> None:
    groups = {f"g{i}": (max(n, t), t) for i, (n, t) in enumerate(specs)}
    dealt = deal_groups(secret, groups, randbytes=os.urandom)
    dealt_record = record(dealt)
    tocs = [tocs[: group.quorum] for tocs, group in zip(dealt.values(), dealt_record, strict=True)]
    assert combine_groups([t for chosen in tocs for t in chosen], dealt_record) == secret
    for size in range(1, len(tocs)):
        for present in itertools.combinations(range(len(tocs)), size):
            subset = [t for i in present for t in tocs[i]]
            partial = combine_groups(subset, [dealt_record[i] for i in present])
            assert partial != secret  # by chance: 32**-8 at most


def test_one_groups_piece_is_uniform_whatever_the_secret_exhaustively() -> None:
    """Two 1-of-1 groups, a two-symbol secret: over all 32**2 values of the
    pad (deal_groups draws it first), each group's piece takes every value
    once, for every secret: one group's Tocs carry nothing about it."""
    views = {}
    for secret in ("AA", "7Q", "MZ"):
        seen: list[Counter[str]] = [Counter(), Counter()]
        for pad in itertools.product(range(32), repeat=2):
            first = [True]

            def randbytes(n: int, pad: tuple[int, ...] = pad, first: list[bool] = first) -> bytes:
                if first[0]:
                    first[0] = False
                    assert n == 2
                    return bytes(value + 32 * 5 for value in pad)  # high bits are masked off
                return os.urandom(n)

            dealt = deal_groups(secret, {"a": (1, 1), "b": (1, 1)}, randbytes=randbytes)
            for counter, (toc,) in zip(seen, dealt.values(), strict=True):
                counter[toc.share[:-1].decode()] += 1
        everything = Counter("".join(pair) for pair in itertools.product(BASE32, repeat=2))
        assert seen[0] == everything and seen[1] == everything
        views[secret] = seen
    assert views["AA"] == views["7Q"] == views["MZ"]


def test_group_ids_of_one_deal_are_distinct_even_when_the_draw_repeats() -> None:
    repeats = [b"\x00" * 5, b"\x00" * 5]

    def randbytes(n: int) -> bytes:
        return repeats.pop() if n == 5 and repeats else os.urandom(n)

    dealt = deal_groups(SECRET, {"a": (2, 2), "b": (2, 2)}, randbytes=randbytes)
    assert len({tocs[0].group_id for tocs in dealt.values()}) == 2


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({}, "give at least one group"),
        ([("a", (2, 2))], "give at least one group"),
        ({f"g{i}": (2, 2) for i in range(MAX_GROUPS + 1)}, "at most 16 groups, not 17"),
        ({"": (2, 2), "b": (2, 2)}, "a group name is 1 to 64 printable characters"),
        ({"info sec": (2, 2), "b": (2, 2)}, "without spaces"),
        ({"a\x00": (2, 2), "b": (2, 2)}, "printable"),
        ({"a": 2, "b": (2, 2)}, r"group a: give \(players, threshold\)"),
        ({"a": (2, 0), "b": (2, 2)}, "threshold cannot be lower than 1 in group a"),
        ({"a": (2, 1)}, "threshold cannot be lower than 2 in group a"),
        (
            {"a": (2, 3), "b": (2, 2)},
            "threshold cannot be higher than the number of players in group a",
        ),
        ({"a": (["x", "x"], 1), "b": (2, 2)}, "player names in group a must be unique"),
        ({"a": (0, 1), "b": (2, 2)}, "the number of players in group a must be 1 to 255"),
        ({"a": (["x"], 1), "b": (["y", "x"], 1)}, "player 'x' is in groups a and b: one person"),
        ({"a": (2, "2"), "b": (2, 2)}, "threshold in group a must be an integer"),
    ],
)
def test_deal_groups_refuses_what_it_cannot_deal(groups: Any, message: str) -> None:
    with pytest.raises(DealError, match=message):
        deal_groups(SECRET, groups, randbytes=os.urandom)


def test_deal_groups_refuses_a_bad_secret_or_note_with_the_deals_messages() -> None:
    assert "invalid TOTP secret" in refusal(
        DealError, deal_groups, "x", GROUPS, randbytes=os.urandom
    )
    assert "note must be a string" in refusal(
        DealError, deal_groups, SECRET, GROUPS, note=3, randbytes=os.urandom
    )


def test_combine_groups_needs_the_dealt_record() -> None:
    tocs = [toc for tocs in DEALT.values() for toc in tocs]
    for bad in ([], [RECORD[0], RECORD[0]], ["record"]):
        with pytest.raises(TocError) as caught:
            combine_groups(tocs, bad)  # type: ignore[arg-type]
        assert caught.value.reason == TocRejection.MALFORMED
    with pytest.raises(TocError, match="expected a Toc, not dict"):
        combine_groups([tocs[0].as_dict()], RECORD)  # type: ignore[list-item]
