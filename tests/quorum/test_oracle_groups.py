"""The dealt record at the oracle, over every store: the registered
threshold wins over whatever toc_zero says, an AND deal needs a quorum of
every group in one session, and no group alone gets the code."""

from __future__ import annotations

import dataclasses

import pytest

from quorum.conftest import Rig
from quorum.kit import SECRET, and_deal, needs_oathtool, oathtool, one_group, refusal
from shimmfa.core.toc import Toc
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import seal_toc
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.records import Refusal
from shimmfa.quorum.store_memory import MemorySessionStore
from shimmfa.quorum.views import OracleEvent


def lying(toc: Toc, threshold: int) -> Toc:
    return dataclasses.replace(toc, group_threshold=threshold)


def test_the_registered_threshold_wins_over_a_lying_toc_zero(rig: Rig) -> None:
    tocs = one_group(5, 3)
    rig.registry.register([tocs[0].group])
    assert refusal(lambda: rig.oracle.open_session(lying(tocs[0], 2))) == Refusal.WRONG_GROUP
    opened = rig.oracle.open_session(tocs[0])
    assert opened.session.tocs_threshold == 3
    rig.oracle.submit(opened.session.id, seal_toc(lying(tocs[1], 2), opened.tek))
    assert refusal(lambda: rig.oracle.release(opened.session.id, opened.kek)) == (
        Refusal.WRONG_GROUP
    )
    rig.oracle.submit(opened.session.id, seal_toc(tocs[1], opened.tek))
    assert refusal(lambda: rig.oracle.release(opened.session.id, opened.kek)) == (
        Refusal.BELOW_THRESHOLD
    )
    rig.oracle.submit(opened.session.id, seal_toc(tocs[2], opened.tek))
    assert rig.oracle.release(opened.session.id, opened.kek).totp


def test_without_a_record_lying_tocs_get_no_code(rig: Rig) -> None:
    """farMFA trusts toc_zero's threshold; here the toc_ids, split with the
    real threshold, do not combine from fewer Tocs."""
    tocs = one_group(5, 3)
    opened = rig.oracle.open_session(lying(tocs[0], 2))
    assert opened.session.tocs_threshold == 2
    rig.oracle.submit(opened.session.id, seal_toc(lying(tocs[1], 2), opened.tek))
    assert refusal(lambda: rig.oracle.release(opened.session.id, opened.kek)) == Refusal.MISMATCH


def test_an_oracle_that_requires_registration_refuses_other_groups(rig: Rig) -> None:
    tocs, other = one_group(3, 2), one_group(3, 2)
    rig.registry.register([tocs[0].group])
    strict = Oracle(rig.store, rig.registry, clock=rig.clock, require_registered=True)
    assert refusal(lambda: strict.open_session(other[0])) == Refusal.UNKNOWN_GROUP
    assert strict.open_session(tocs[0]).session.tocs_threshold == 2
    with pytest.raises(QuorumError):
        Oracle(MemorySessionStore(), None, require_registered=True)


def test_registering_a_group_again_needs_the_same_record(rig: Rig) -> None:
    tocs = one_group(3, 2)
    rig.registry.register([tocs[0].group])
    rig.registry.register([tocs[0].group])
    with pytest.raises(QuorumError, match="registered already"):
        rig.registry.register([tocs[0].group, one_group()[0].group])
    assert rig.registry.deal_of(tocs[0].group_id) == (tocs[0].group,)
    assert rig.registry.deal_of("AAAAAAAA") is None


@needs_oathtool
@pytest.mark.parametrize(
    "approvers",
    [("clinical", 0, "clinical", 1, "infosec", 0), ("infosec", 1, "clinical", 2, "clinical", 0)],
)
def test_an_and_deal_releases_the_code_with_a_quorum_of_every_group(
    rig: Rig, approvers: tuple[object, ...]
) -> None:
    dealt = and_deal()
    rig.registry.register([dealt["clinical"][0].group, dealt["infosec"][0].group])
    pairs = list(zip(approvers[::2], approvers[1::2], strict=True))
    first, *others = [dealt[str(group)][int(str(index))] for group, index in pairs]
    opened = rig.oracle.open_session(first)
    assert opened.session.tocs_threshold == 3 and len(opened.session.groups) == 2
    assert "groups" in opened.session.as_dict()
    for toc in others:
        rig.oracle.submit(opened.session.id, seal_toc(toc, opened.tek))
    assert rig.oracle.release(opened.session.id, opened.kek).totp == oathtool(SECRET, rig.clock.now)


def test_no_group_of_an_and_deal_alone_gets_a_code(rig: Rig) -> None:
    dealt = and_deal()
    rig.registry.register([dealt["clinical"][0].group, dealt["infosec"][0].group])
    clinical = rig.oracle.open_session(dealt["clinical"][0])
    for toc in dealt["clinical"][1:]:
        rig.oracle.submit(clinical.session.id, seal_toc(toc, clinical.tek))
    assert refusal(lambda: rig.oracle.release(clinical.session.id, clinical.kek)) == (
        Refusal.BELOW_THRESHOLD
    )
    infosec = rig.oracle.open_session(dealt["infosec"][0])
    rig.oracle.submit(infosec.session.id, seal_toc(dealt["infosec"][1], infosec.tek))
    with pytest.raises(QuorumError) as caught:
        rig.oracle.release(infosec.session.id, infosec.kek)
    assert caught.value.reason == Refusal.BELOW_THRESHOLD
    assert "has 0 of the 2" in str(caught.value)


@needs_oathtool
def test_unregistered_one_group_of_an_and_deal_gets_only_a_useless_code(rig: Rig) -> None:
    """Without the record the oracle cannot know a group is missing: the
    clinical quorum combines to its piece, whose code opens nothing. The
    1-of-n group's clear Toc is refused outright."""
    dealt = and_deal()
    opened = rig.oracle.open_session(dealt["clinical"][0])
    rig.oracle.submit(opened.session.id, seal_toc(dealt["clinical"][1], opened.tek))
    code = rig.oracle.release(opened.session.id, opened.kek).totp
    assert code != oathtool(SECRET, rig.clock.now)
    assert refusal(lambda: rig.oracle.open_session(dealt["infosec"][0])) == (Refusal.UNKNOWN_GROUP)


def test_the_audit_hook_hears_every_step_and_no_secret(rig: Rig) -> None:
    heard: list[OracleEvent] = []
    oracle = Oracle(rig.store, rig.registry, clock=rig.clock, audit=heard.append)
    tocs, foreign = one_group(3, 2), one_group(3, 2)
    opened = oracle.open_session(tocs[0], applicant="alice")
    oracle.submit(opened.session.id, seal_toc(foreign[0], opened.tek), approver="mallory")
    oracle.submit(opened.session.id, seal_toc(tocs[1], opened.tek), approver="bob")
    code = oracle.release(opened.session.id, opened.kek)
    kinds = [(event.kind, event.approver, event.detail) for event in heard]
    assert kinds == [
        ("session_opened", "alice", ""),
        ("toc_submitted", "mallory", ""),
        ("toc_submitted", "bob", ""),
        ("toc_set_aside", "mallory", "wrong_group"),
        ("code_released", None, "alice, bob"),
    ]
    assert all(event.group_ids == (tocs[0].group_id,) for event in heard)
    assert code.totp not in repr(heard) and opened.kek not in repr(heard)


def test_a_failing_audit_hook_does_not_fail_the_request(rig: Rig) -> None:
    def broken(_: OracleEvent) -> None:
        raise RuntimeError("the audit sink is down")

    oracle = Oracle(rig.store, rig.registry, clock=rig.clock, audit=broken)
    assert oracle.open_session(one_group()[0]).tek.startswith("age1")
