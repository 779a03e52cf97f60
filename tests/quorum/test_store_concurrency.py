"""Changes to one session serialise, in each store, across threads and
(for SQL) across engines, as several workers or hosts have: two concurrent
duplicates cannot both count, and a code cannot be released twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from quorum.conftest import Rig
from quorum.kit import one_group
from shimmfa.errors import QuorumError
from shimmfa.quorum.age_tocs import seal_toc
from shimmfa.quorum.oracle import Oracle
from shimmfa.quorum.records import Change, SealedToc, SessionState

WAIT = 20.0


def at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls` in threads released together; each result or exception."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> object:
        barrier.wait(WAIT)
        try:
            return call()
        except QuorumError as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def oracles(rig: Rig, count: int) -> list[Oracle]:
    """One oracle per thread; on SQL each has its own engine (a worker)."""
    return [rig.oracle, *(rig.another() for _ in range(count - 1))]


def reasons(results: list[object]) -> list[str]:
    return sorted(r.reason if isinstance(r, QuorumError) else "ok" for r in results)


def test_a_second_update_waits_for_the_first_to_commit_and_sees_it(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    sid = opened.session.id
    store_b = rig.another_store()
    a_inside, a_may_finish, b_inside = threading.Event(), threading.Event(), threading.Event()
    seen_by_b: list[int] = []

    def decide_a(state: SessionState) -> tuple[Change, None]:
        a_inside.set()
        assert a_may_finish.wait(WAIT)
        added = SealedToc(1, "x", "digest-a", "a", 0.0)
        return Change(add=added), None

    def decide_b(state: SessionState) -> tuple[Change, None]:
        b_inside.set()
        seen_by_b.append(len(state.tocs))
        return Change(add=SealedToc(len(state.tocs), "y", "digest-b", "b", 0.0)), None

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(rig.store.update, sid, decide_a)
        assert a_inside.wait(WAIT)
        second = pool.submit(store_b.update, sid, decide_b)
        assert not b_inside.wait(0.5), "a second update ran while the first held the session"
        a_may_finish.set()
        first.result(WAIT), second.result(WAIT)
    assert seen_by_b == [2]  # toc_zero and A's Toc
    state = rig.store.read(sid)
    assert state is not None and [toc.approver for toc in state.tocs] == [None, "a", "b"]


def test_the_same_sealed_toc_sent_twice_at_once_counts_once(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    sealed = seal_toc(tocs[1], opened.tek)
    a, b = oracles(rig, 2)
    results = at_once(
        [lambda: a.submit(opened.session.id, sealed)]
        + [lambda: b.submit(opened.session.id, sealed)]
    )
    assert reasons(results) == ["duplicate", "ok"]
    assert rig.oracle.session(opened.session.id).tocs_provided == 2


def test_one_share_sealed_twice_and_sent_at_once_counts_once(rig: Rig) -> None:
    tocs = one_group(4, 3)
    opened = rig.oracle.open_session(tocs[0])
    a, b = oracles(rig, 2)
    first, second = seal_toc(tocs[1], opened.tek), seal_toc(tocs[1], opened.tek)
    results = at_once(
        [lambda: a.submit(opened.session.id, first), lambda: b.submit(opened.session.id, second)]
    )
    assert reasons(results) == ["ok", "ok"]  # the oracle cannot read them yet
    with pytest.raises(QuorumError) as caught:
        rig.oracle.release(opened.session.id, opened.kek)
    assert caught.value.reason == "duplicate"
    assert rig.oracle.session(opened.session.id).tocs_provided == 2


def test_two_code_requests_at_once_release_one_code(rig: Rig) -> None:
    tocs = one_group(3, 2)
    opened = rig.oracle.open_session(tocs[0])
    rig.oracle.submit(opened.session.id, seal_toc(tocs[1], opened.tek))
    a, b = oracles(rig, 2)
    results = at_once(
        [
            lambda: a.release(opened.session.id, opened.kek),
            lambda: b.release(opened.session.id, opened.kek),
        ]
    )
    assert reasons(results) == ["ok", "released"]


def test_distinct_tocs_sent_at_once_all_count(rig: Rig) -> None:
    tocs = one_group(6, 6)
    opened = rig.oracle.open_session(tocs[0])
    sealed = [seal_toc(toc, opened.tek) for toc in tocs[1:]]
    workers = oracles(rig, len(sealed))
    results = at_once(
        [
            (lambda o=o, s=s: o.submit(opened.session.id, s))
            for o, s in zip(workers, sealed, strict=True)
        ]
    )
    assert reasons(results) == ["ok"] * 5
    state = rig.store.read(opened.session.id)
    assert state is not None and [toc.seq for toc in state.tocs] == [0, 1, 2, 3, 4, 5]
    assert rig.oracle.release(opened.session.id, opened.kek).totp
