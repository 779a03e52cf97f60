"""What the shim pulls from and pushes to central besides its events: the
technician bundle (`bundle_sync`) and the recordings (`uploads`), built
from the settings, started and stopped together by the daemon.

Rules:
- Nothing runs without `central.url`. The bundle is synced only with
  `central.public_key` (the key it must be signed with is pinned: without
  it no bundle could be trusted); recordings are uploaded with
  `central.upload_recordings` (the default).
- Both run in their own threads with their own state DB connection and
  HTTPS client, so neither waits on nor blocks the relay or the other.
- `stop()` ends both within a bounded time (SIGTERM stays prompt): a
  request under way is left to its timeout in a daemon thread; the next
  start resumes from the state DB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shimmfa.core.bundle import pinned_key
from shimmfa.shim.reporting.alerts import Emitter
from shimmfa.shim.reporting.bundle_sync import BundleSync
from shimmfa.shim.reporting.central import CentralClient
from shimmfa.shim.reporting.uploads import RecordingUploader
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.keys import ShimKeys
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.synced import SyncedTechnicians
from shimmfa.shim.state.uploads import UploadLedger

__all__ = ["CentralSync", "central_sync"]

log = logging.getLogger("shimmfa.sync")


@dataclass
class CentralSync:
    client: CentralClient
    store: StateStore
    bundles: BundleSync | None
    uploads: RecordingUploader | None

    def start(self) -> None:
        for part in (self.bundles, self.uploads):
            if part is not None:
                part.start()

    def session_ended(self) -> None:
        """A recording was just finished: look at it now."""
        if self.uploads is not None:
            self.uploads.wake()

    def stop(self, timeout: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        stopped = True
        for part in (self.bundles, self.uploads):
            if part is not None and not part.stop(max(0.05, deadline - time.monotonic())):
                log.warning("%s still busy at stop; leaving it to end", type(part).__name__)
                stopped = False
        if stopped:  # else the busy thread still uses them; the process exit ends it
            self.client.close()
            self.store.close()


def central_sync(
    settings: Settings,
    keys: ShimKeys,
    alerts: Emitter,
    *,
    open_session: Callable[[], str | None],
    local_ids: Callable[[], set[str]] = set,
) -> CentralSync | None:
    """The syncer and uploader the settings ask for (not started), or None."""
    central = settings.central
    if central.url is None:
        return None
    if central.public_key is None:
        log.warning(
            "central.public_key is not set: technicians are not synced from central (set it "
            "to the signing key `shimmfa central keys show` prints)"
        )
    if central.upload_recordings and not settings.recording.recipients:
        log.warning(
            "recordings are uploaded to central but encrypted only to a local key: add "
            "central's recording recipient (`shimmfa central keys show`) to "
            "recording.recipients, or central cannot play them back"
        )
    if central.public_key is None and not central.upload_recordings:
        return None
    client = CentralClient(central, settings.shim.id)
    store = StateStore(settings.storage_root)
    bundles = None
    if central.public_key is not None:
        bundles = BundleSync(
            client,
            SyncedTechnicians(store),
            alerts,
            shim_id=settings.shim.id,
            pinned=pinned_key(central.public_key),
            identity=keys.identity,
            period=central.sync_period,
            max_age=central.bundle_max_age,
            local_ids=local_ids,
        )
    uploads = None
    if central.upload_recordings:
        uploads = RecordingUploader(
            client,
            UploadLedger(store),
            alerts,
            sessions_dir=settings.storage_root / "sessions",
            shim_key=keys.public_key_raw,
            open_session=open_session,
            delete_after=settings.recording.delete_after_upload,
        )
    return CentralSync(client, store, bundles, uploads)
