"""The state anchor (`shimmfa.shim.state.anchor`) on real files: a state DB
that was lost, replaced, rolled back, or whose anchor was removed or forged
is told apart from a sound one and from a new shim; a latch cleared behind
the shim's back comes back."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shimmfa.shim.state.anchor import (
    AnchoredLatch,
    Verdict,
    anchor_path,
    inspect,
    provision_keys,
    read_anchor,
    update_anchor,
)
from shimmfa.shim.state.db import db_path
from shimmfa.shim.state.keys import ShimKeys
from shimmfa.shim.state.store import BOOT_COUNTER, StateStore

T0 = 1_795_431_299.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def keys(root: Path) -> ShimKeys:
    keys, created = provision_keys(root, T0)
    assert "signing.pem" in created
    return keys


def boot(root: Path, keys: ShimKeys, *, now: float = T0) -> Verdict:
    """One daemon start as `shimmfa run` does it: inspect, count, anchor."""
    existed = db_path(root).exists()
    store = StateStore(root)
    try:
        check = inspect(root, keys, store, db_existed=existed, keys_existed=True, now=now)
        store.increment(BOOT_COUNTER)
        if check.sound:
            update_anchor(root, keys, store, now)
        return check.verdict
    finally:
        store.close()


def test_a_new_shim_is_anchored_when_its_keys_are_made(root: Path, keys: ShimKeys) -> None:
    anchor = read_anchor(root, keys.public_key_raw)
    assert anchor is not None and anchor.boot_count == 0 and anchor.latch is None
    assert stat.S_IMODE(anchor_path(root).stat().st_mode) == 0o600
    assert [boot(root, keys) for _ in range(3)] == [Verdict.OK] * 3
    anchor = read_anchor(root, keys.public_key_raw)
    assert anchor is not None and anchor.boot_count == 3
    names = sorted(p.name for p in anchor_path(root).parent.iterdir())
    assert names == ["shim.agekey", "signing.pem", "state.anchor"]  # no temporary left


def test_a_missing_state_db_is_lost(root: Path, keys: ShimKeys) -> None:
    boot(root, keys)
    shutil.move(db_path(root).parent, root / "elsewhere")
    assert boot(root, keys) is Verdict.LOST
    assert boot(root, keys) is Verdict.REPLACED  # the empty DB made meanwhile is not it


def test_another_state_db_is_replaced(root: Path, keys: ShimKeys, tmp_path: Path) -> None:
    other_root = tmp_path / "other"
    other_keys, _ = provision_keys(other_root, T0)
    boot(other_root, other_keys)
    boot(root, keys)
    shutil.rmtree(db_path(root).parent)
    shutil.copytree(db_path(other_root).parent, db_path(root).parent)
    assert boot(root, keys) is Verdict.REPLACED


def test_an_older_copy_of_the_state_db_is_rolled_back(root: Path, keys: ShimKeys, tmp_path: Path):
    boot(root, keys)
    backup = tmp_path / "backup"
    shutil.copytree(db_path(root).parent, backup)
    boot(root, keys)
    boot(root, keys)
    shutil.rmtree(db_path(root).parent)
    shutil.copytree(backup, db_path(root).parent)
    assert boot(root, keys) is Verdict.ROLLED_BACK


def test_a_removed_anchor_on_a_provisioned_shim_is_lost(root: Path, keys: ShimKeys) -> None:
    boot(root, keys)
    anchor_path(root).unlink()
    assert boot(root, keys) is Verdict.LOST


def test_state_and_anchor_removed_with_the_keys_left_is_lost(root: Path, keys: ShimKeys) -> None:
    boot(root, keys)
    anchor_path(root).unlink()
    shutil.rmtree(db_path(root).parent)
    assert boot(root, keys) is Verdict.LOST


@pytest.mark.parametrize("forgery", ["edited", "other key", "garbage"])
def test_an_anchor_not_signed_by_this_shim_is_forged(
    root: Path, keys: ShimKeys, forgery: str
) -> None:
    boot(root, keys)
    path = anchor_path(root)
    if forgery == "edited":
        document = json.loads(path.read_text())
        document["anchor"]["boot_count"] = 0
        path.write_text(json.dumps(document))
    elif forgery == "other key":
        other = ShimKeys(Ed25519PrivateKey.generate(), keys.identity, keys.directory)
        update_anchor(root, other, StateStore(root), T0)
    else:
        path.write_text("{not json")
    assert boot(root, keys) is Verdict.FORGED


def test_an_unanchored_db_of_an_older_shimmfa_is_anchored_once(root: Path, tmp_path: Path):
    # keys and a DB from before anchors existed: no anchor, no state ID
    keys, _ = provision_keys(root, T0)
    anchor_path(root).unlink()
    store = StateStore(root)
    with store._transaction() as db:  # what an older shimmfa wrote: no identity row
        db.execute("DELETE FROM state_identity")
    store.close()
    assert boot(root, keys) is Verdict.PROVISIONED
    assert boot(root, keys) is Verdict.OK


def test_a_latch_cleared_behind_the_shims_back_comes_back(root: Path, keys: ShimKeys) -> None:
    boot(root, keys)
    store = StateStore(root)
    latches = AnchoredLatch(root, keys, store, sound=True)
    latches.set_latch("tamper:case_opened", T0, {"sensor": "case"})
    store.close()
    anchor = read_anchor(root, keys.public_key_raw)
    assert anchor is not None and anchor.latch == "tamper:case_opened"
    store = StateStore(root)
    with store._transaction() as db:  # an edit with sqlite3, not an authorised reset
        db.execute("DELETE FROM tamper_latch")
    check = inspect(root, keys, store, db_existed=True, keys_existed=True, now=T0, repair=False)
    assert check.verdict is Verdict.OK and "cleared behind" in check.why
    assert store.latch() is None  # without repair, nothing changes
    inspect(root, keys, store, db_existed=True, keys_existed=True, now=T0)
    latch = store.latch()
    assert latch is not None and latch.reason == "tamper:case_opened"
    store.close()


def test_an_authorised_clear_is_anchored_and_stays_clear(root: Path, keys: ShimKeys) -> None:
    boot(root, keys)
    store = StateStore(root)
    latches = AnchoredLatch(root, keys, store, sound=True)
    latches.set_latch("tamper:case_opened", T0, {})
    latches.clear_latch(T0 + 1, "admin@example.org", "inspected")
    store.close()
    assert boot(root, keys) is Verdict.OK
    store = StateStore(root)
    assert store.latch() is None
    store.close()
