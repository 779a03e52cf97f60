"""Audited operator actions on the shim: `shimmfa tamper reset` clears the
tamper latch; `shimmfa state recover` starts a new state generation after
the state DB was lost, replaced or rolled back; `examine` says whether the
state is sound without changing anything.

Rules:
- The operator must be an admin (`roles: [admin]`) known to the config file
  or to the surviving state DB (never a technician synced from central);
  their code is checked by the same TOTP gate
  and state as a port login (a used code is a replay, failures count
  towards their lockout). Every attempt, granted or refused, is audited and
  sent to the SIEM; a refusal says only that the credentials are invalid.
- `tamper reset` never clears `tamper:state_lost`: only a recovery does.
- `breakglass provision` makes the break-glass secret (state/breakglass.py)
  only for an authorised admin; the secret leaves the shim only as Tocs.
- A recovery gives the DB a new state ID, continues the boot count above
  the anchor's (and the DB's), raises every known technician's replay floor
  (central's synced ones included) to the current time step, that of
  every further factor of their MFA chains too (no code from before the
  recovery logs in),
  clears the `state_lost` latch but keeps any other latch the anchor
  remembers, and anchors the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from shimmfa.core.chain_state import ChainState
from shimmfa.core.totp import AuthState
from shimmfa.errors import TechnicianError
from shimmfa.shim.reporting.alerts import Alerts, AuditedAuthenticator
from shimmfa.shim.reporting.outbox import Outbox
from shimmfa.shim.settings import Settings
from shimmfa.shim.state import breakglass
from shimmfa.shim.state.anchor import (
    STATE_LOST,
    AnchorUnreadableError,
    Check,
    Verdict,
    inspect,
    read_anchor,
    update_anchor,
)
from shimmfa.shim.state.db import db_path
from shimmfa.shim.state.factors import ChainStore, Factor, factors_of
from shimmfa.shim.state.keys import load_keys
from shimmfa.shim.state.store import BOOT_COUNTER, StateStore
from shimmfa.shim.state.synced import SyncedTechnicians, SyncedView
from shimmfa.shim.state.technicians import TechnicianDirectory, build_gate
from shimmfa.shim.state.uploads import UploadLedger, UploadState

__all__ = [
    "ResetRefusedError",
    "examine",
    "provision_breakglass",
    "recover",
    "reset",
    "sync_status",
]


class ResetRefusedError(TechnicianError):
    """The action was not authorised."""


# the event each audited action raises, granted or refused
_KINDS = {
    "tamper_reset": "latch_reset",
    "state_recover": "state_recovered",
    "breakglass_provision": "breakglass_provisioned",
}


def _authorise(
    settings: Settings, store: StateStore, alerts: Alerts, operator: str, code: str, action: str
) -> None:
    """Check `operator` is an admin with a valid code; audit a refusal and
    raise ResetRefusedError with the one generic message."""
    record = TechnicianDirectory(settings.technician_records(), store).get(operator)
    outcome = AuditedAuthenticator(build_gate(settings, store), alerts).authenticate(operator, code)
    if outcome.authenticated and record is not None and "admin" in record.roles:
        return
    why = outcome.detail if not outcome.authenticated else "not an admin"
    store.audit(time.time(), f"{action}_refused", operator, {"reason": why})
    alerts.emit(_KINDS[action], {"authorised_by": operator, "granted": False, "why": why})
    raise ResetRefusedError(
        f"{action.replace('_', ' ')} refused: invalid operator credentials or not an admin"
    )


def _with_alerts(settings: Settings, work: Callable[[Alerts], None]) -> None:
    outbox = Outbox(settings.storage_root, max_rows=settings.siem.outbox_max)
    try:
        work(Alerts(outbox, settings.shim.id))
    finally:
        outbox.close()


def examine(settings: Settings) -> Check:
    """Is the state the anchored one? Read-only: a missing DB is not made."""
    root = settings.storage_root
    keys = load_keys(root)
    if not db_path(root).exists():
        try:
            anchor = read_anchor(root, keys.public_key_raw)
        except AnchorUnreadableError as exc:
            return Check(Verdict.FORGED, str(exc))
        return Check(Verdict.LOST, "the state DB is missing", anchor)
    store = StateStore(root)
    try:
        return inspect(
            root, keys, store, db_existed=True, keys_existed=True, now=time.time(), repair=False
        )
    finally:
        store.close()


def reset(settings: Settings, store: StateStore, operator: str, code: str, reason: str) -> None:
    latched = store.latch()
    if latched is None:
        raise TechnicianError("the tamper latch is not set; nothing to reset")
    if latched.reason == STATE_LOST:
        raise TechnicianError(
            "the latch says the state DB was lost or replaced: `shimmfa tamper reset` cannot "
            "clear it; use `shimmfa state recover`"
        )

    sound = examine(settings).sound

    def work(alerts: Alerts) -> None:
        _authorise(settings, store, alerts, operator, code, "tamper_reset")
        now = time.time()
        store.clear_latch(now, operator, reason)
        if sound:
            update_anchor(settings.storage_root, load_keys(settings.storage_root), store, now)
        alerts.emit(
            "latch_reset",
            {
                "authorised_by": operator,
                "granted": True,
                "reason": reason,
                "latch_reason": latched.reason,
            },
        )

    _with_alerts(settings, work)


def _raise_replay_floors(settings: Settings, store: StateStore, now: float) -> int:
    """Every known technician's last accepted time step is at least now's."""
    synced = SyncedView(SyncedTechnicians(store), math.inf)  # expired or not
    directory = TechnicianDirectory(settings.technician_records(), store, synced)
    chains = ChainStore(store)
    count = 0
    everyone = list(directory.items())
    emergency = breakglass.breakglass_record(store)
    if emergency is not None:
        everyone.append((emergency.technician_id, emergency))
    for technician_id, record in everyone:
        step = int(now // (record.period or settings.totp.period))

        def change(state: AuthState, step: int = step) -> tuple[AuthState, None]:
            return replace(state, last_counter=max(state.last_counter, step)), None

        store.update(technician_id, change)
        count += 1
        factors = factors_of(settings, store, technician_id)
        if factors:
            chains.update(technician_id, partial(_chain_floors, factors, now))
    return count


def _chain_floors(factors: list[Factor], now: float, state: ChainState) -> tuple[ChainState, None]:
    """Every further factor's replay floor is at least now's time step."""
    for factor in factors:
        step = int(now // factor.definition.period)
        state = state.with_floor(factor.definition.id, max(state.floor(factor.definition.id), step))
    return state, None


def recover(
    settings: Settings, operator: str, code: str, reason: str, *, boot_floor: int = 0
) -> dict[str, object]:
    """Start a new state generation (see the module's rules); what was done.
    `boot_floor`: a boot count the new generation must exceed (central's)."""
    root = settings.storage_root
    keys = load_keys(root)
    check = examine(settings)
    if check.sound:
        raise TechnicianError("the state DB is the anchored one; there is nothing to recover")
    store = StateStore(root)
    done: dict[str, object] = {}
    try:

        def work(alerts: Alerts) -> None:
            _authorise(settings, store, alerts, operator, code, "state_recover")
            now = time.time()
            anchor = check.anchor
            floor = max(store.counter(BOOT_COUNTER), boot_floor, anchor.boot_count if anchor else 0)
            store.raise_counter(BOOT_COUNTER, floor)
            state_id, generation = store.new_identity(now)
            floors = _raise_replay_floors(settings, store, now)
            latch = store.latch()
            if latch is not None and latch.reason == STATE_LOST:
                store.clear_latch(now, operator, reason)
            kept = anchor.latch if anchor and anchor.latch not in (None, STATE_LOST) else None
            if kept is not None and store.latch() is None:
                store.set_latch(kept, now, {"restored_from": "the state anchor"})
            update_anchor(root, keys, store, now)
            done.update(
                verdict=str(check.verdict),
                generation=generation,
                boot_floor=floor,
                replay_floors=floors,
                latch_kept=kept,
            )
            store.audit(now, "state_recovered", operator, {"reason": reason, **done})
            alerts.emit(
                "state_recovered",
                {"authorised_by": operator, "granted": True, "reason": reason, **done},
            )
            done["state_id"] = state_id

        _with_alerts(settings, work)
    finally:
        store.close()
    return done


def provision_breakglass(
    settings: Settings,
    operator: str,
    code: str,
    make: Callable[[], tuple[str, dict[str, object]]],
) -> bool:
    """Authorise `operator` (an admin's code), then keep the secret `make()`
    returns (it deals the Tocs) with its deal's public record; True if it
    replaced a break-glass secret. Nothing is dealt for a refused operator."""
    store = StateStore(settings.storage_root)
    replaced = False
    try:

        def work(alerts: Alerts) -> None:
            nonlocal replaced
            _authorise(settings, store, alerts, operator, code, "breakglass_provision")
            secret, deal = make()
            replaced = breakglass.provision(store, secret, deal, time.time(), operator)
            groups = deal.get("groups")
            alerts.emit(
                "breakglass_provisioned",
                {
                    "authorised_by": operator,
                    "granted": True,
                    "replaced": replaced,
                    "groups": ",".join(sorted(groups)) if isinstance(groups, dict) else "",
                },
            )

        _with_alerts(settings, work)
    finally:
        store.close()
    return replaced


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def sync_status(settings: Settings, now: float) -> list[str]:
    """Lines saying where the sync with central stands: the technician
    bundle (version, age, expiry), the last attempt, the recordings' uploads.
    Empty without `central.url` or a state DB. Read-only."""
    central = settings.central
    if central.url is None or not db_path(settings.storage_root).exists():
        return []
    store = StateStore(settings.storage_root)
    try:
        synced = SyncedTechnicians(store)
        lines = []
        status = synced.status()
        if central.public_key is None:
            lines.append("technician bundle: not synced (central.public_key is not set)")
        elif status is None:
            lines.append("technician bundle: none received yet")
        else:
            age = status.age(now)
            left = central.bundle_max_age - age
            validity = (
                f"valid {_ago(left)} more without a sync"
                if left >= 0
                else f"EXPIRED {_ago(-left)} ago: central's technicians are refused"
            )
            lines.append(
                f"technician bundle: version {status.version}, {status.technicians} "
                f"technician(s), accepted {_when(status.accepted_at)} ({_ago(age)} ago); "
                f"{validity}"
            )
        attempt = synced.last_attempt("bundle")
        if attempt is not None:
            outcome = "ok" if attempt.ok else "FAILED"
            lines.append(
                f"  last sync attempt {_when(attempt.at)} ({_ago(now - attempt.at)} ago): "
                f"{outcome}: {attempt.detail}"
            )
        counts = UploadLedger(store).counts()
        if central.upload_recordings or counts:
            shown = ", ".join(
                f"{counts.get(state, 0)} {state.value}"
                for state in (
                    UploadState.STORED,
                    UploadState.DELETED,
                    UploadState.READY,
                    UploadState.REFUSED,
                    UploadState.UNFINISHED,
                )
            )
            lines.append(f"recordings at central: {shown}")
        return lines
    finally:
        store.close()
