"""The state anchor: what the shim remembers about its state DB outside it,
so that moving `state/` aside, deleting it or putting an older copy back is
seen as tampering instead of a fresh start.

`<storage.root>/keys/state.anchor` (0600) holds the DB's random state ID,
the boot count's high-water mark and the tamper latch's reason (or null),
signed with the shim's Ed25519 key under a label of its own, and is
rewritten atomically (temporary file, fsync, rename, fsync of the
directory) at every boot once that boot is counted, and whenever the latch
is set or cleared on a sound state.

Rules (`inspect`, at start, before the DB is used):
- Provisioning is when the shim's signing key is made (`provision_keys`,
  used by the daemon and every command that makes keys): the DB gets its ID
  and the anchor is written then. No anchor and a DB without a state ID: the
  first start of a shimmfa that has anchors (an upgrade), anchored likewise.
- Anchor present and: the DB missing -> `lost`; the DB's ID differs (or it
  has none) -> `replaced`; the DB's boot count below the anchor's ->
  `rolled_back`. No anchor but a provisioned shim (keys from an earlier
  start, or a DB with an ID) -> `lost` (the anchor went with the state).
  A sound DB whose latch is clear while the anchor says latched gets the
  latch back (someone cleared it behind the shim's back): a set latch never
  reads clear.
  An anchor that does not parse or whose signature does not verify with
  this shim's key -> `forged`.
- Every verdict but `ok` and `provisioned` fails closed: the daemon latches
  `tamper:state_lost`, sends the `state_lost` event and never rewrites the
  anchor; only `shimmfa state recover` (an admin's code) starts a new state
  generation and anchors it. Until then that latch keeps the verdict, even
  when later starts have counted the DB's boots back up to the anchor's.
- What the anchor cannot see: both files rolled back together to a
  consistent older copy. A TPM monotonic counter (README) closes that.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shimmfa.core.heartbeat import canonical
from shimmfa.shim.state.keys import SIGNING_FILE, ShimKeys, init_keys, keys_dir
from shimmfa.shim.state.store import BOOT_COUNTER, Latch, StateStore

__all__ = [
    "ANCHOR_FILE",
    "STATE_LOST",
    "Anchor",
    "AnchorUnreadableError",
    "Check",
    "Verdict",
    "AnchoredLatch",
    "update_anchor",
    "anchor_path",
    "inspect",
    "provision_keys",
    "read_anchor",
    "write_anchor",
]

ANCHOR_FILE = "state.anchor"
LABEL = b"shimmfa state anchor v1\n"
STATE_LOST = "tamper:state_lost"  # the latch of a state found lost, until recovered


class Verdict(StrEnum):
    OK = "ok"
    PROVISIONED = "provisioned"
    LOST = "lost"
    REPLACED = "replaced"
    ROLLED_BACK = "rolled_back"
    FORGED = "forged"


@dataclass(frozen=True, slots=True)
class Anchor:
    state_id: str
    boot_count: int
    latch: str | None
    written_at: float


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    why: str
    anchor: Anchor | None = None

    @property
    def sound(self) -> bool:
        return self.verdict in (Verdict.OK, Verdict.PROVISIONED)


class AnchorUnreadableError(ValueError):
    """The anchor file exists but cannot be trusted."""


def anchor_path(storage_root: Path) -> Path:
    return keys_dir(storage_root) / ANCHOR_FILE


def read_anchor(storage_root: Path, public_key: bytes) -> Anchor | None:
    """The anchor, None when there is none; AnchorUnreadableError when it is
    malformed or not signed by `public_key`."""
    path = anchor_path(storage_root)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        body = document["anchor"]
        signature = base64.b64decode(document["sig"], validate=True)
        latch = body["latch"]
        if latch is not None and not isinstance(latch, str):
            raise TypeError("latch")
        anchor = Anchor(
            str(body["state_id"]), int(body["boot_count"]), latch, float(body["written_at"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnchorUnreadableError(f"{path} is unreadable ({type(exc).__name__})") from None
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, LABEL + canonical(body))
    except (InvalidSignature, ValueError):
        raise AnchorUnreadableError(f"{path} is not signed by this shim's key") from None
    return anchor


def write_anchor(
    storage_root: Path,
    keys: ShimKeys,
    state_id: str,
    boot_count: int,
    latch: str | None,
    now: float,
) -> None:
    """Sign and write the anchor atomically, on disk when this returns."""
    body: dict[str, Any] = {
        "state_id": state_id,
        "boot_count": boot_count,
        "latch": latch,
        "written_at": now,
    }
    signature = keys.sign(LABEL + canonical(body))
    document = {"anchor": body, "sig": base64.b64encode(signature).decode()}
    target = anchor_path(storage_root)
    temporary = target.with_name(target.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def inspect(
    storage_root: Path,
    keys: ShimKeys,
    store: StateStore,
    *,
    db_existed: bool,
    keys_existed: bool,
    now: float,
    repair: bool = True,
) -> Check:
    """Compare the state DB with the anchor (see the module's rules). With
    `repair` (the daemon's start): on first provisioning or upgrade, give
    the DB its ID and write the anchor; put back a latch cleared behind the
    shim's back. Without it, change nothing."""
    try:
        anchor = read_anchor(storage_root, keys.public_key_raw)
    except AnchorUnreadableError as exc:
        return Check(Verdict.FORGED, str(exc))
    identity = store.identity()
    latch = store.latch() if db_existed else None
    if latch is not None and latch.reason == STATE_LOST:
        found = latch.detail.get("verdict")
        verdict = Verdict(found) if found in set(Verdict) - {Verdict.OK} else Verdict.LOST
        return Check(verdict, "the state was found lost and has not been recovered", anchor)
    if anchor is None:
        if identity is not None or (keys_existed and not db_existed):
            return Check(Verdict.LOST, f"the state anchor {anchor_path(storage_root)} is missing")
        if repair:
            store.new_identity(now)
            update_anchor(storage_root, keys, store, now)
        return Check(Verdict.PROVISIONED, "state anchored for the first time")
    if not db_existed:
        return Check(Verdict.LOST, "the state DB is missing", anchor)
    if identity is None or identity[0] != anchor.state_id:
        return Check(Verdict.REPLACED, "the state DB is not the one the anchor names", anchor)
    boot_count = store.counter(BOOT_COUNTER)
    if boot_count < anchor.boot_count:
        return Check(
            Verdict.ROLLED_BACK,
            f"the state DB's boot count {boot_count} is below the anchor's {anchor.boot_count}",
            anchor,
        )
    if anchor.latch is not None and store.latch() is None:
        if not repair:
            why = f"the tamper latch ({anchor.latch}) was cleared behind the shim's back"
            return Check(Verdict.OK, why + "; it is set again at the next start", anchor)
        store.set_latch(anchor.latch, now, {"restored_from": "the state anchor"})
        return Check(Verdict.OK, f"the tamper latch ({anchor.latch}) was restored", anchor)
    return Check(Verdict.OK, "the state DB is the anchored one", anchor)


def update_anchor(storage_root: Path, keys: ShimKeys, store: StateStore, now: float) -> None:
    """Anchor what the (sound) DB holds now: its ID, boot count and latch.
    Called after a start counted its boot and when the latch changes."""
    identity = store.identity()
    if identity is None:
        raise RuntimeError("update_anchor() on a DB without a state ID")
    latch = store.latch()
    write_anchor(
        storage_root,
        keys,
        identity[0],
        store.counter(BOOT_COUNTER),
        latch.reason if latch is not None else None,
        now,
    )


class AnchoredLatch:
    """The state store's tamper latch (`tamper.LatchStore`) with the anchor
    kept in step: on a sound state every change is anchored at once, so a
    rolled-back or edited DB cannot bring back "clear"."""

    def __init__(self, storage_root: Path, keys: ShimKeys, store: StateStore, *, sound: bool):
        self._root = storage_root
        self._keys = keys
        self._store = store
        self.sound = sound

    def latch(self) -> Latch | None:
        return self._store.latch()

    def set_latch(self, reason: str, at: float, detail: dict[str, Any]) -> None:
        self._store.set_latch(reason, at, detail)
        self._anchor(at)

    def clear_latch(self, at: float, operator: str, reason: str) -> None:
        self._store.clear_latch(at, operator, reason)
        self._anchor(at)

    def _anchor(self, now: float) -> None:
        if self.sound:
            update_anchor(self._root, self._keys, self._store, now)


def provision_keys(storage_root: Path, now: float) -> tuple[ShimKeys, list[str]]:
    """`init_keys`; when that made the shim's signing key (a new shim), also
    give its state DB an ID and write the first anchor."""
    keys, created = init_keys(storage_root)
    if SIGNING_FILE in created:
        store = StateStore(storage_root)
        try:
            if store.identity() is None:
                store.new_identity(now)
            update_anchor(storage_root, keys, store, now)
        finally:
            store.close()
    return keys, created
