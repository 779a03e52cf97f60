"""What a host that authenticates its callers adds to the oracle, over every
store (`shimmfa.quorum.approvers`, `Oracle.open_for_deal`): a session for
a deal with no Toc in clear; an approver sends Tocs only of the groups
they hold (403, nothing stored), counts once, and a Toc of a group its
sender does not hold is set aside at release; the code goes to the
applicant only."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyrage import x25519
from sqlalchemy import create_engine, inspect, text

from quorum.conftest import Rig
from quorum.kit import SECRET, and_deal, needs_oathtool, oathtool, refusal
from shimmfa.core.toc import Toc
from shimmfa.quorum.age_tocs import seal_toc
from shimmfa.quorum.approvers import Approver
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.records import Refusal, TocStatus
from shimmfa.quorum.store_sql import create_tables
from shimmfa.quorum.views import OracleEvent


def registered(rig: Rig) -> tuple[dict[str, list[Toc]], str, str]:
    dealt = and_deal()
    clinical, infosec = dealt["clinical"][0].group_id, dealt["infosec"][0].group_id
    rig.registry.register([dealt["clinical"][0].group, dealt["infosec"][0].group])
    return dealt, clinical, infosec


def holder(name: str, *groups: str) -> Approver:
    return Approver(name, frozenset(groups))


@needs_oathtool
def test_a_session_for_a_deal_starts_with_no_toc_and_needs_every_group(rig: Rig) -> None:
    dealt, clinical, infosec = registered(rig)
    opened = rig.oracle.open_for_deal(infosec, 600, applicant="rita")
    assert opened.session.tocs_provided == 0 and opened.session.tocs_threshold == 3
    assert opened.session.toc_group_id == infosec
    state = rig.store.read(opened.session.id)
    assert state is not None and state.tocs == () and state.session.applicant == "rita"
    sid = opened.session.id
    rig.oracle.submit(sid, seal_toc(dealt["clinical"][0], opened.tek), holder("ann", clinical))
    rig.oracle.submit(sid, seal_toc(dealt["clinical"][1], opened.tek), holder("bob", clinical))
    assert refusal(lambda: rig.oracle.release(sid, opened.kek, "rita")) == (Refusal.BELOW_THRESHOLD)
    rig.oracle.submit(sid, seal_toc(dealt["infosec"][1], opened.tek), holder("ines", infosec))
    code = rig.oracle.release(sid, opened.kek, "rita")
    assert code.totp == oathtool(SECRET, rig.clock.now)
    assert code.approvers == ("ann", "bob", "ines")


def test_a_deal_that_was_not_registered_opens_no_session(rig: Rig) -> None:
    assert refusal(lambda: rig.oracle.open_for_deal("AAAAAAAA", 600)) == Refusal.UNKNOWN_GROUP
    _, clinical, _ = registered(rig)
    assert refusal(lambda: rig.oracle.open_for_deal(clinical, 59)) == Refusal.MALFORMED


def test_an_approver_of_no_group_of_the_session_is_refused_and_nothing_is_stored(
    rig: Rig,
) -> None:
    heard: list[OracleEvent] = []
    oracle = Oracle(rig.store, rig.registry, clock=rig.clock, audit=heard.append)
    dealt, clinical, _ = registered(rig)
    opened = oracle.open_for_deal(clinical, 600)
    sealed = seal_toc(dealt["clinical"][0], opened.tek)
    for who in (holder("ann"), holder("ann", "ZZZZZZZZ")):
        assert refusal(lambda w=who: oracle.submit(opened.session.id, sealed, w)) == (
            Refusal.NOT_PERMITTED
        )
    state = rig.store.read(opened.session.id)
    assert state is not None and state.tocs == ()
    assert [(e.kind, e.detail) for e in heard[1:]] == [("toc_refused", "not_permitted")] * 2
    oracle.submit(opened.session.id, sealed, holder("ann", clinical))  # the same Toc, allowed


def test_toc_zero_must_be_of_a_group_its_applicant_holds(rig: Rig) -> None:
    dealt, clinical, infosec = registered(rig)
    toc = dealt["clinical"][0]
    assert refusal(lambda: rig.oracle.open_session(toc, 600, holder("ivan", infosec))) == (
        Refusal.NOT_PERMITTED
    )
    opened = rig.oracle.open_session(toc, 600, holder("ann", clinical))
    state = rig.store.read(opened.session.id)
    assert state is not None and state.tocs[0].holds == (clinical,)


def test_a_toc_of_a_group_its_sender_does_not_hold_is_set_aside(rig: Rig) -> None:
    """A clinical engineer who got hold of an infosec Toc cannot make the
    clinical department count for both."""
    dealt, clinical, infosec = registered(rig)
    opened = rig.oracle.open_for_deal(clinical, 600, "rita")
    sid = opened.session.id
    rig.oracle.submit(sid, seal_toc(dealt["clinical"][0], opened.tek), holder("ann", clinical))
    rig.oracle.submit(sid, seal_toc(dealt["clinical"][1], opened.tek), holder("bob", clinical))
    rig.oracle.submit(sid, seal_toc(dealt["infosec"][0], opened.tek), holder("cat", clinical))
    assert refusal(lambda: rig.oracle.release(sid, opened.kek, "rita")) == Refusal.WRONG_GROUP
    state = rig.another_store().read(sid)
    assert state is not None
    assert [(t.approver, t.status, t.reason) for t in state.tocs][-1] == (
        "cat",
        TocStatus.SET_ASIDE,
        Refusal.WRONG_GROUP,
    )
    assert [t.holds for t in state.tocs] == [(clinical,)] * 3
    rig.oracle.submit(sid, seal_toc(dealt["infosec"][0], opened.tek), holder("ivan", infosec))
    assert rig.oracle.release(sid, opened.kek, "rita").approvers == ("ann", "bob", "ivan")


def test_each_named_approver_counts_once_until_their_toc_is_set_aside(rig: Rig) -> None:
    dealt, clinical, _ = registered(rig)
    opened = rig.oracle.open_for_deal(clinical, 600)
    sid, ann = opened.session.id, holder("ann", clinical)
    elsewhere = x25519.Identity.generate().to_public()  # not this session's TEK
    rig.oracle.submit(sid, seal_toc(dealt["clinical"][0], elsewhere), ann)
    again = seal_toc(dealt["clinical"][1], opened.tek)
    assert refusal(lambda: rig.oracle.submit(sid, again, ann)) == Refusal.DUPLICATE
    assert refusal(lambda: rig.oracle.release(sid, opened.kek)) == Refusal.UNDECRYPTABLE
    rig.oracle.submit(sid, seal_toc(dealt["clinical"][0], opened.tek), ann)  # set aside: again
    assert rig.oracle.session(sid).tocs_provided == 1


def test_only_a_named_applicant_gets_the_code(rig: Rig) -> None:
    dealt, clinical, infosec = registered(rig)
    opened = rig.oracle.open_for_deal(clinical, 600, "rita")
    sid = opened.session.id
    for toc, name, group in (
        (dealt["clinical"][0], "ann", clinical),
        (dealt["clinical"][1], "bob", clinical),
        (dealt["infosec"][0], "ivan", infosec),
    ):
        rig.oracle.submit(sid, seal_toc(toc, opened.tek), holder(name, group))
    assert refusal(lambda: rig.oracle.release(sid, opened.kek, "mallory")) == (
        Refusal.NOT_PERMITTED
    )
    assert rig.oracle.session(sid).released is False
    assert rig.oracle.release(sid, opened.kek, holder("rita")).totp
    assert refusal(lambda: rig.oracle.release(sid, opened.kek, "rita")) == Refusal.RELEASED


def test_an_approver_name_is_checked() -> None:
    from shimmfa.quorum.approvers import approver_of

    assert approver_of(None) is None
    assert approver_of("ann") == Approver("ann")
    for bad in ("", "x" * 256):
        with pytest.raises(Exception, match="1 to 255"):
            approver_of(bad)


def test_retiring_a_deal_stops_new_sessions_only(rig: Rig) -> None:
    dealt, clinical, infosec = registered(rig)
    opened = rig.oracle.open_for_deal(clinical, 600)
    assert rig.registry.retire(infosec) == 2
    assert rig.registry.deal_of(clinical) is None
    assert refusal(lambda: rig.oracle.open_for_deal(clinical, 600)) == Refusal.UNKNOWN_GROUP
    rig.oracle.submit(opened.session.id, seal_toc(dealt["clinical"][0], opened.tek))
    assert rig.oracle.session(opened.session.id).tocs_threshold == 3


def test_create_tables_adds_the_holds_column_to_an_older_database(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE quorum_tocs (session_id VARCHAR(16), seq INTEGER, armored TEXT, "
                "digest VARCHAR(64), approver VARCHAR(255), submitted_at FLOAT, "
                "status VARCHAR(16), reason VARCHAR(32), PRIMARY KEY (session_id, seq))"
            )
        )
    create_tables(engine)
    create_tables(engine)  # idempotent
    with engine.connect() as conn:
        assert "holds" in {c["name"] for c in inspect(conn).get_columns("quorum_tocs")}
    engine.dispose()
