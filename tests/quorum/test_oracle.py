"""The oracle's rules, in-process over every store (memory, SQLite,
PostgreSQL) on a manual clock: farMFA's flow, and each hole of farMFA's
closed with its typed refusal."""

from __future__ import annotations

import base64
import os

import pytest

from quorum.conftest import Rig
from quorum.kit import SECRET, T0, needs_oathtool, oathtool, one_group, refusal
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import new_identity, seal_toc
from shimmfa.quorum.records import Refusal, TocStatus


@needs_oathtool
def test_a_quorum_releases_the_code_oathtool_prints_at_that_moment(rig: Rig) -> None:
    tocs = one_group(5, 3)
    opened = rig.oracle.open_session(tocs[0], 300)
    assert opened.session.tocs_threshold == 3 and opened.session.tocs_in_group == 5
    for toc in tocs[3:5]:
        rig.clock.advance(2)
        rig.oracle.submit(opened.session.id, seal_toc(toc, opened.tek))
    assert rig.oracle.session(opened.session.id).complete
    code = rig.oracle.release(opened.session.id, opened.kek)
    assert code.totp == oathtool(SECRET, rig.clock.now)
    assert code.totp_expires_at == (int(rig.clock.now) // 30 + 1) * 30
    assert code.session_expires_at == T0 + 300


def test_below_the_threshold_is_refused_and_the_session_stays_open(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    assert refusal(lambda: rig.oracle.release(opened.session.id, opened.kek)) == (
        Refusal.BELOW_THRESHOLD
    )
    rig.oracle.submit(opened.session.id, seal_toc(tocs[2], opened.tek))
    assert len(rig.oracle.release(opened.session.id, opened.kek).totp) == 6


def test_a_re_encrypted_duplicate_is_found_by_its_share_and_no_longer_counts(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    sid = opened.session.id
    rig.oracle.submit(sid, seal_toc(tocs[0], opened.tek))  # a new ciphertext of toc_zero
    assert rig.oracle.session(sid).tocs_provided == 2
    assert refusal(lambda: rig.oracle.release(sid, opened.kek)) == Refusal.DUPLICATE
    view = rig.oracle.session(sid)
    assert (view.tocs_provided, view.complete) == (1, False)
    state = rig.store.read(sid)
    assert state is not None and state.tocs[1].status == TocStatus.SET_ASIDE
    rig.oracle.submit(sid, seal_toc(tocs[1], opened.tek))
    assert rig.oracle.release(sid, opened.kek).totp


def test_the_same_ciphertext_twice_is_refused_when_it_is_sent(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    sealed = seal_toc(tocs[1], opened.tek)
    rig.oracle.submit(opened.session.id, sealed)
    crlf = sealed.replace("\n", "\r\n")  # the same age file, other line ends
    assert refusal(lambda: rig.oracle.submit(opened.session.id, crlf)) == Refusal.DUPLICATE
    assert rig.oracle.session(opened.session.id).tocs_provided == 2


def test_a_toc_of_another_group_is_set_aside_as_wrong_group(rig: Rig) -> None:
    tocs, foreign = one_group(3, 2), one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    rig.oracle.submit(opened.session.id, seal_toc(foreign[1], opened.tek))
    assert refusal(lambda: rig.oracle.release(opened.session.id, opened.kek)) == (
        Refusal.WRONG_GROUP
    )
    assert rig.oracle.session(opened.session.id).tocs_provided == 1


def test_a_toc_sealed_to_another_key_is_undecryptable(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    rig.oracle.submit(opened.session.id, seal_toc(tocs[1], new_identity().to_public()))
    assert refusal(lambda: rig.oracle.release(opened.session.id, opened.kek)) == (
        Refusal.UNDECRYPTABLE
    )


@pytest.mark.parametrize(
    "kek",
    [
        base64.b64encode(os.urandom(74)).decode(),  # a pad of the right length
        base64.b64encode(os.urandom(73)).decode(),
        "not base64!",
        "",
        "A" * 2000,
    ],
    ids=["random-pad", "short", "not-base64", "empty", "long"],
)
def test_a_wrong_kek_is_refused_and_changes_nothing(rig: Rig, kek: str) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    rig.oracle.submit(opened.session.id, seal_toc(tocs[1], opened.tek))
    assert refusal(lambda: rig.oracle.release(opened.session.id, kek)) == Refusal.BAD_KEK
    assert rig.oracle.release(opened.session.id, opened.kek).totp


def test_another_sessions_kek_does_not_open_this_one(rig: Rig) -> None:
    tocs = one_group(3, 2)
    first, second = rig.oracle.open_session(tocs[0]), rig.oracle.open_session(tocs[1])
    rig.oracle.submit(first.session.id, seal_toc(tocs[2], first.tek))
    assert refusal(lambda: rig.oracle.release(first.session.id, second.kek)) == Refusal.BAD_KEK


def test_the_code_is_released_once_then_the_session_is_closed(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    sid = opened.session.id
    rig.oracle.submit(sid, seal_toc(tocs[1], opened.tek), approver="bob")
    rig.oracle.release(sid, opened.kek)
    assert refusal(lambda: rig.oracle.release(sid, opened.kek)) == Refusal.RELEASED
    assert refusal(lambda: rig.oracle.submit(sid, seal_toc(tocs[2], opened.tek))) == (
        Refusal.RELEASED
    )
    view = rig.oracle.session(sid)
    assert view.complete and view.released
    rig.clock.advance(60)
    assert refusal(lambda: rig.oracle.session(sid)) == Refusal.EXPIRED
    assert refusal(lambda: rig.oracle.release(sid, opened.kek)) == Refusal.RELEASED
    state = rig.store.read(sid)  # nothing left that could rebuild the secret
    assert state is not None and state.session.sealed_identity is None
    assert [toc.armored for toc in state.tocs] == [None, None]
    assert [toc.status for toc in state.tocs] == [TocStatus.COUNTED] * 2


def test_an_expired_session_answers_expired_and_forgets_its_secrets(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0], 60)
    sid = opened.session.id
    rig.oracle.submit(sid, seal_toc(tocs[1], opened.tek))
    rig.clock.advance(59.9)
    assert rig.oracle.session(sid).tocs_provided == 2
    rig.clock.advance(0.1)
    assert refusal(lambda: rig.oracle.session(sid)) == Refusal.EXPIRED
    assert refusal(lambda: rig.oracle.submit(sid, seal_toc(tocs[2], opened.tek))) == (
        Refusal.EXPIRED
    )
    assert refusal(lambda: rig.oracle.release(sid, opened.kek)) == Refusal.EXPIRED
    state = rig.store.read(sid)
    assert state is not None and state.session.sealed_identity is None
    assert all(toc.armored is None for toc in state.tocs)


def test_sessions_expired_long_ago_are_deleted_when_sessions_open(rig: Rig) -> None:
    tocs = one_group(3, 2)
    old = rig.oracle.open_session(tocs[0], 60).session.id
    rig.clock.advance(60 + 7 * 86400 + 1)
    fresh = rig.oracle.open_session(tocs[1], 60).session.id
    assert rig.store.read(old) is None and rig.store.read(fresh) is not None
    assert refusal(lambda: rig.oracle.session(old)) == Refusal.NOT_FOUND


@pytest.mark.parametrize("sid", ["AAAAAAAAAAAAAAAA", "nope", "../../etc", "A" * 17, ""])
def test_an_unknown_session_is_not_found(rig: Rig, sid: str) -> None:
    assert refusal(lambda: rig.oracle.session(sid)) == Refusal.NOT_FOUND
    assert (
        refusal(
            lambda: rig.oracle.submit(sid, seal_toc(one_group()[0], new_identity().to_public()))
        )
        == Refusal.NOT_FOUND
    )  # noqa: E501
    assert refusal(lambda: rig.oracle.release(sid, "AAAA")) == Refusal.NOT_FOUND


@pytest.mark.parametrize("ttl", [59, 86401, 0, -1, True, "60", 60.0, None])
def test_the_ttl_is_an_integer_from_60_to_86400(rig: Rig, ttl: object) -> None:
    assert refusal(lambda: rig.oracle.open_session(one_group()[0], ttl)) == Refusal.MALFORMED


@pytest.mark.parametrize("ttl", [60, 86400])
def test_expires_at_is_created_at_plus_the_ttl(rig: Rig, ttl: int) -> None:
    view = rig.oracle.open_session(one_group()[0], ttl).session
    assert (view.created_at, view.expires_at, view.ttl) == (T0, T0 + ttl, ttl)
    assert view.as_dict()["expires_at"] is not None


def test_each_toc_records_its_approver_and_the_code_names_them(rig: Rig) -> None:
    tocs = one_group(4, 3)
    opened = rig.oracle.open_session(tocs[0], applicant="alice")
    rig.oracle.submit(opened.session.id, seal_toc(tocs[1], opened.tek), approver="bob")
    rig.oracle.submit(opened.session.id, seal_toc(tocs[2], opened.tek), approver="carol")
    code = rig.oracle.release(opened.session.id, opened.kek)
    assert code.approvers == ("alice", "bob", "carol")
    state = rig.store.read(opened.session.id)
    assert state is not None and [toc.approver for toc in state.tocs] == ["alice", "bob", "carol"]


def test_no_more_tocs_than_were_dealt(rig: Rig) -> None:
    tocs = one_group(2, 2)
    opened = rig.oracle.open_session(tocs[0])
    rig.oracle.submit(opened.session.id, seal_toc(tocs[0], opened.tek))  # re-sealed toc_zero
    extra = seal_toc(tocs[1], opened.tek)
    assert refusal(lambda: rig.oracle.submit(opened.session.id, extra)) == Refusal.TOO_MANY
    with pytest.raises(QuorumError):  # the duplicate is set aside: a slot frees
        rig.oracle.release(opened.session.id, opened.kek)
    rig.oracle.submit(opened.session.id, extra)
    assert rig.oracle.release(opened.session.id, opened.kek).totp


@pytest.mark.parametrize("body", ["", "hello", "-----BEGIN AGE ENCRYPTED FILE-----\nAAAA\n"])
def test_what_is_not_an_armored_age_file_is_malformed(rig: Rig, body: str) -> None:
    opened = rig.oracle.open_session(one_group()[0])
    assert refusal(lambda: rig.oracle.submit(opened.session.id, body)) == Refusal.MALFORMED


@pytest.mark.parametrize(
    "toc_zero", [{}, [], "x", {"group_id": "AAAAAAAA"}, '{"share": 1}'], ids=repr
)
def test_a_toc_zero_that_is_no_toc_is_malformed(rig: Rig, toc_zero: object) -> None:
    assert refusal(lambda: rig.oracle.open_session(toc_zero)) == Refusal.MALFORMED  # type: ignore[arg-type]


def test_secrets_stay_out_of_reprs(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    rig.oracle.submit(opened.session.id, seal_toc(tocs[1], opened.tek))
    code = rig.oracle.release(opened.session.id, opened.kek)
    shown = repr(opened) + repr(code) + repr(rig.store.read(opened.session.id))
    assert opened.kek not in shown and code.totp not in shown
