"""The dealer's parsing and its record, in-process: player and group specs,
and the dealt record read back from any document."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shimmfa.core.toc import TocGroup
from shimmfa.errors import DealError, QuorumError
from shimmfa.quorum.age_tocs import new_identity
from shimmfa.quorum.dealing import (
    PlayerSpec,
    deal_document,
    dealt_groups,
    normalised_secret,
    parse_group,
    parse_player,
)

RECIPIENT = str(new_identity().to_public())


def test_player_and_group_specs() -> None:
    assert parse_player(f"ann={RECIPIENT}") == PlayerSpec("ann", None, RECIPIENT)
    assert parse_player(f"clinical/ann={RECIPIENT}").full_name == "clinical/ann"
    assert parse_group("infosec:1") == ("infosec", 1)
    for bad in ("ann", "=age1", f"a b={RECIPIENT}", f"x/y/z={RECIPIENT}", "ann=age1nope"):
        with pytest.raises(DealError):
            parse_player(bad)
    for bad in ("infosec", "infosec:", ":2", "a b:2", "x:1234"):
        with pytest.raises(DealError):
            parse_group(bad)


def test_the_secret_is_normalised_before_it_is_dealt() -> None:
    assert normalised_secret(" jbsw y3dp\nehpk 3pxp \n") == "JBSWY3DPEHPK3PXP"


def test_a_deal_needs_players_and_a_threshold() -> None:
    with pytest.raises(DealError, match="at least two players"):
        deal_document("JBSWY3DPEHPK3PXP", [], threshold=2)
    with pytest.raises(DealError, match="--threshold"):
        deal_document("JBSWY3DPEHPK3PXP", [parse_player(f"a={RECIPIENT}")])


def test_the_record_of_a_one_group_and_an_and_deal() -> None:
    one = {"group_id": "AAAAAAAA", "threshold": 2, "size": 3, "note": "", "tocs": {}}
    assert dealt_groups(one) == (TocGroup("AAAAAAAA", 3, 2),)
    both = {
        "groups": {
            "clinical": {"group_id": "BBBBBBBB", "threshold": 2, "size": 3},
            "infosec": {"group_id": "CCCCCCCC", "threshold": 1, "size": 1},
        }
    }
    assert dealt_groups(both) == (
        TocGroup("BBBBBBBB", 3, 2),
        TocGroup("CCCCCCCC", 2, 2, clear=True),
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["groups", "group_id", "threshold", "size", "x"]), children, max_size=4
        )
    ),
    max_leaves=10,
)


@given(JSON)
def test_any_document_gives_a_record_or_a_quorum_error(document: object) -> None:
    try:
        record = dealt_groups(document)
    except QuorumError:
        return
    assert record and all(isinstance(group, TocGroup) for group in record)


@given(st.text(max_size=150))
def test_any_player_spec_parses_or_is_a_deal_error(spec: str) -> None:
    try:
        player = parse_player(spec)
    except DealError:
        return
    assert player.recipient.startswith("age1")
