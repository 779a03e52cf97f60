"""Pulling this shim's technician bundle from central, at start and every
`central.sync_period`, from a background thread.

Rules:
- Off the relay's path: its own thread and its own state DB connection;
  the gate sees a new set of technicians at its next login, through
  `state.synced`. Nothing here touches the gate or the ports: whatever
  fails, the port's state is what it was (fail safe).
- A bundle is checked by `core.bundle.open_bundle` (the PINNED key,
  this shim's age identity and ID, a version above the one held) and
  applied in one transaction. One that fails changes nothing, is logged,
  and raises `bundle_rejected` (the precise reason in its fields).
- Central unreachable or answering an error: the last good bundle stays,
  a warning is logged, and the next try comes after 5 s, doubling up to
  the sync period. Once the bundle is older than `central.bundle_max_age`
  its technicians are refused (`state.synced`) and `bundle_expired` is
  raised, once per expiry; the log says when it is valid again.
- A bundle that changes who may log in raises `bundle_applied` (added,
  removed, changed IDs) and is logged at INFO; one that changes nothing is
  logged at INFO after a start or a failure, else at DEBUG. A synced
  ID that the config file or the state DB also has is shadowed by them:
  the log says so.
- Every attempt is kept (`SyncedTechnicians.note_attempt("bundle", ...)`)
  for `shimmfa state status`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyrage import x25519

from shimmfa.core.bundle import open_bundle
from shimmfa.errors import BundleError, StateError
from shimmfa.shim.reporting.alerts import Emitter
from shimmfa.shim.reporting.central import Requester
from shimmfa.shim.reporting.loop import BackgroundLoop
from shimmfa.shim.state.synced import BundleChange, SyncedTechnicians

__all__ = ["BundleSync", "SyncResult"]

log = logging.getLogger("shimmfa.sync")

RETRY_INITIAL = 5.0
ATTEMPT = "bundle"


@dataclass(frozen=True, slots=True)
class SyncResult:
    ok: bool
    detail: str
    change: BundleChange | None = None


_HINTS = {
    401: "central does not accept this shim's credential (central.token_file)",
    403: "central says this credential is another shim's",
    409: "central has no age recipient for this shim: register the one `shimmfa keys show` "
    "prints (`shimmfa central shim add ... --age-recipient` or PUT .../age-recipient)",
}


def _names(ids: Iterable[str], limit: int = 20) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


class BundleSync(BackgroundLoop):
    """See the module rules. `sync_once()` is one attempt; `start()` runs
    them from a thread until `stop()`."""

    thread_name = "central-sync"

    def __init__(
        self,
        client: Requester,
        synced: SyncedTechnicians,
        alerts: Emitter,
        *,
        shim_id: str,
        pinned: bytes,
        identity: x25519.Identity,
        period: float,
        max_age: float,
        local_ids: Callable[[], set[str]] = set,
        clock: Callable[[], float] = time.time,
        retry_initial: float = RETRY_INITIAL,
    ) -> None:
        super().__init__()
        self._client = client
        self._synced = synced
        self._alerts = alerts
        self._shim_id = shim_id
        self._pinned = pinned
        self._identity = identity
        self.period = period
        self.max_age = max_age
        self._local_ids = local_ids
        self._clock = clock
        self._retry_initial = min(retry_initial, period)
        self._retry = 0.0
        self._expired_reported = False
        self._quiet = False  # after the first good sync, unchanged ones log at DEBUG
        self.attempts = 0

    # -- one attempt ------------------------------------------------------------------

    def sync_once(self) -> SyncResult:
        """Fetch, check and apply the bundle; never raises."""
        self.attempts += 1
        try:
            result = self._attempt()
        except Exception as exc:  # a bug here must not end syncing
            log.exception("technician bundle sync failed")
            result = SyncResult(False, f"internal error: {type(exc).__name__}: {exc}")
        try:
            self._synced.note_attempt(ATTEMPT, self._clock(), result.ok, result.detail)
            self._check_expiry()
        except StateError as exc:
            log.error("could not note the sync attempt or check the bundle's age: %s", exc)
        return result

    def _attempt(self) -> SyncResult:
        try:
            answer = self._client.request("GET", "/technicians")
        except OSError as exc:
            log.warning("technician bundle: %s; the last good bundle stays", exc)
            return SyncResult(False, str(exc))
        if answer.status != 200:
            hint = _HINTS.get(answer.status, "")
            log.error(
                "technician bundle: central answered %s%s; the last good bundle stays",
                answer.describe(),
                f" ({hint})" if hint else "",
            )
            return SyncResult(False, answer.describe())
        now = self._clock()
        try:
            bundle = open_bundle(
                answer.body,
                pinned=self._pinned,
                identity=self._identity,
                shim_id=self._shim_id,
                last_version=self._synced.version(),
            )
            change = self._synced.apply(bundle, now)
        except BundleError as exc:
            log.error("%s; nothing changed, the last good bundle stays", exc)
            self._alerts.emit("bundle_rejected", {"reason": exc.reason, "detail": str(exc)})
            return SyncResult(False, str(exc))
        self._report(bundle.version, change)
        return SyncResult(True, f"version {bundle.version}: {change.count} technician(s)", change)

    def _report(self, version: int, change: BundleChange) -> None:
        first, self._quiet = not self._quiet, True
        log.log(
            logging.INFO if first or change.any or self._retry else logging.DEBUG,
            "technician bundle version %d applied: %d technician(s) from central (+%d -%d ~%d)",
            version,
            change.count,
            len(change.added),
            len(change.removed),
            len(change.changed),
        )
        if self._expired_reported:
            log.warning("technician bundle valid again: central's technicians may log in")
            self._expired_reported = False
        if not change.any:
            return
        shadowed = sorted(self._local_ids() & set(self._synced.ids()))
        for tid in shadowed:
            log.warning(
                "technician %s from central is shadowed by the shim's own entry (config file "
                "or state DB), which wins",
                tid,
            )
        if change.removed:
            log.warning("technicians no longer valid here: %s", _names(change.removed))
        self._alerts.emit(
            "bundle_applied",
            {
                "version": version,
                "technicians": change.count,
                "added": _names(change.added),
                "removed": _names(change.removed),
                "changed": _names(change.changed),
                "shadowed": _names(shadowed),
            },
        )

    def _check_expiry(self) -> None:
        now = self._clock()
        status = self._synced.status()
        if status is None or status.age(now) <= self.max_age:
            return
        if not self._expired_reported:
            self._expired_reported = True
            log.error(
                "technician bundle EXPIRED: no good sync for %.0f s (central.bundle_max_age "
                "%.0f s); central's %d technician(s) are refused until the shim reaches "
                "central; the config file's still log in",
                status.age(now),
                self.max_age,
                status.technicians,
            )
            self._alerts.emit(
                "bundle_expired",
                {
                    "age_s": round(status.age(now), 1),
                    "version": status.version,
                    "technicians": status.technicians,
                },
            )

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            result = self.sync_once()
            if result.ok:
                self._retry = 0.0
                delay = self.period
            else:
                self._retry = (
                    self._retry_initial if not self._retry else min(self._retry * 2, self.period)
                )
                delay = self._retry
            try:
                self._wait(delay)
            except Exception:  # the state DB failed under us: log, wait, go on
                log.exception("technician bundle sync")
                self._stopping.wait(delay)

    def _wait(self, delay: float) -> None:
        """Until the next sync, a wake-up or a stop; also when the bundle
        expires meanwhile (to say so on time)."""
        deadline = time.monotonic() + delay
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            status = self._synced.status()
            if status is not None and not self._expired_reported:
                expires_in = status.accepted_at + self.max_age - self._clock()
                left = min(left, max(expires_in + 0.01, 0.5))
            if self._wake.wait(left):
                self._wake.clear()
                return
            self._check_expiry()
