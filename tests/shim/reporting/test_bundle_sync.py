"""The shim's technician bundle sync (`shimmfa.shim.reporting.bundle_sync`)
against a real `shimmfa central serve` over TLS, with the real HTTPS
client: a technician enrolled and assigned at central logs in at the gate
after a sync and is refused after a revocation; a bundle that was forged,
tampered with, replayed, made for another shim or another identity, or is
garbage changes nothing and raises `bundle_rejected`; an unreachable
central keeps the last good bundle until `bundle_max_age`, then
`bundle_expired` (once) and central's technicians are refused until the
next good sync; the shim's own technicians win over central's."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from central.server import CentralServer
from shim.reporting.central_kit import (
    ShimSide,
    assign,
    central_keys,
    central_server,  # noqa: F401 - the module's central, used by name
    enrol_active,
    revoke,
    unreachable_client,
)
from shimmfa.central.bundles import bundle_plaintext
from shimmfa.core.bundle import CONTEXT, pinned_key
from shimmfa.core.totp import AuthResult, TechnicianRecord
from shimmfa.shim.reporting.bundle_sync import BundleSync
from shimmfa.shim.reporting.central import Answer, CentralClient, Requester
from shimmfa.shim.state.synced import SyncedTechnicians
from shimmfa.shim.state.technicians import build_gate
from waiting import wait_for

MAX_AGE = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def side(tmp_path: Path, central_server: CentralServer) -> Iterator[ShimSide]:  # noqa: F811
    made = ShimSide(
        tmp_path / "shim", central_server, f"shim-{secrets.token_hex(4)}", bundle_max_age=MAX_AGE
    )
    yield made
    made.close()


def syncer(
    side: ShimSide,
    *,
    client: Requester | None = None,
    clock: Callable[[], float] = time.time,
    period: float = 300.0,
    local_ids: Callable[[], set[str]] = set,
) -> BundleSync:
    return BundleSync(
        client or side.client,
        SyncedTechnicians(side.store),
        side.alerts,
        shim_id=side.shim_id,
        pinned=pinned_key(central_keys(side.server).public_key_text),
        identity=side.keys.identity,
        period=period,
        max_age=MAX_AGE,
        local_ids=local_ids,
        clock=clock,
    )


def login(side: ShimSide, technician_id: str, secret: str, at: float) -> AuthResult:
    gate = build_gate(
        side.settings, side.store, clock=lambda: at, synced=SyncedTechnicians(side.store)
    )
    return gate.authenticate(technician_id, pyotp.TOTP(secret).at(at)).result


def held(side: ShimSide) -> tuple[int, list[str], int]:
    """What a refused bundle must leave alone: version, IDs, audit rows."""
    synced = SyncedTechnicians(side.store)
    return synced.version(), synced.ids(), len(side.store.audit_log())


def test_a_technician_assigned_at_central_logs_in_after_a_sync_and_not_after_revocation(
    side: ShimSide,
) -> None:
    tid = f"ada-{side.shim_id}@vendor"
    secret = enrol_active(side.server, tid, time.time())
    assign(side.server, tid, side.shim_id)
    sync = syncer(side)
    result = sync.sync_once()
    assert result.ok, result.detail
    now = time.time()
    assert login(side, tid, secret, now) == AuthResult.OK
    (applied,) = side.events("bundle_applied")
    assert applied.fields["added"] == tid and applied.fields["technicians"] == 1
    attempt = SyncedTechnicians(side.store).last_attempt("bundle")
    assert attempt is not None and attempt.ok

    revoke(side.server, tid)
    assert sync.sync_once().ok
    assert login(side, tid, secret, now + 30) == AuthResult.BAD_USER  # at once
    assert side.events("bundle_applied")[-1].fields["removed"] == tid
    assert sync.sync_once().ok  # nothing changed: no further event
    assert len(side.events("bundle_applied")) == 2


class Altered:
    """Central's real answer, changed on the way (a man in the middle)."""

    def __init__(self, real: Requester, change: Callable[[dict[str, Any]], Any]) -> None:
        self.real, self.change = real, change

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        answer = self.real.request(method, path, **kwargs)
        return Answer(answer.status, self.change(dict(answer.body)))


def forged(body: dict[str, Any]) -> dict[str, Any]:
    forger = Ed25519PrivateKey.generate()
    sig = forger.sign(CONTEXT + body["bundle"].encode())
    return {**body, "sig": base64.b64encode(sig).decode()}


def tampered(body: dict[str, Any]) -> dict[str, Any]:
    lines = body["bundle"].splitlines()
    lines[2] = lines[2][:-1] + ("A" if lines[2][-1] != "A" else "B")
    return {**body, "bundle": "\n".join(lines) + "\n"}


def garbage(body: dict[str, Any]) -> Any:
    return {"bundle": "<html>proxy error</html>", "sig": "", "signed_by": ""}


def signed_by_central(side: ShimSide, shim_id: str, recipient: str) -> Callable[[Any], Any]:
    """A bundle central's real key signed, for `shim_id`, to `recipient`."""

    def make(body: dict[str, Any]) -> dict[str, Any]:
        keys = central_keys(side.server)
        plain = bundle_plaintext(shim_id, int(time.time() * 1000) + 10**9, time.time(), [])
        armored = pyrage.encrypt(plain, [x25519.Recipient.from_str(recipient)], armored=True)
        text = armored.decode("ascii")
        return {"bundle": text, "sig": keys.sign_bundle(text), "signed_by": keys.public_key_text}

    return make


@pytest.mark.parametrize(
    "attack", ["forged", "tampered", "garbage", "another_shim", "another_identity", "replayed"]
)
def test_a_bundle_that_fails_verification_changes_nothing_and_raises_an_event(
    side: ShimSide, attack: str
) -> None:
    tid = f"ben-{side.shim_id}@vendor"
    secret = enrol_active(side.server, tid, time.time())
    assign(side.server, tid, side.shim_id)
    stale = side.client.request("GET", "/technicians").body  # issued, never applied
    assert syncer(side).sync_once().ok
    before = held(side)
    change: Callable[[dict[str, Any]], Any] = {
        "forged": forged,
        "tampered": tampered,
        "garbage": garbage,
        "another_shim": signed_by_central(side, "another-shim", side.keys.recipient),
        "another_identity": signed_by_central(
            side, side.shim_id, str(x25519.Identity.generate().to_public())
        ),
        "replayed": lambda body: stale,
    }[attack]
    result = syncer(side, client=Altered(side.client, change)).sync_once()
    assert not result.ok
    assert held(side) == before
    assert login(side, tid, secret, time.time()) == AuthResult.OK  # the last good one stays
    (rejected,) = side.events("bundle_rejected")
    assert (
        rejected.fields["reason"]
        == {
            "forged": "bad_signature",
            "tampered": "bad_signature",
            "garbage": "malformed",
            "another_shim": "wrong_shim",
            "another_identity": "undecryptable",
            "replayed": "not_newer",
        }[attack]
    )
    attempt = SyncedTechnicians(side.store).last_attempt("bundle")
    assert attempt is not None and not attempt.ok and "refused" in attempt.detail


def test_an_unreachable_central_keeps_the_last_good_bundle_until_it_expires(
    side: ShimSide, caplog: pytest.LogCaptureFixture
) -> None:
    tid = f"cy-{side.shim_id}@vendor"
    secret = enrol_active(side.server, tid, time.time())
    assign(side.server, tid, side.shim_id)
    clock = Clock()
    assert syncer(side, clock=clock).sync_once().ok
    offline = syncer(side, client=unreachable_client(side), clock=clock)
    clock.now += MAX_AGE - 60
    result = offline.sync_once()
    assert not result.ok and "cannot be reached" in result.detail
    assert login(side, tid, secret, clock.now) == AuthResult.OK
    assert side.events("bundle_expired") == [] and side.events("bundle_rejected") == []

    clock.now += 61  # past bundle_max_age without a good sync
    with caplog.at_level(logging.ERROR, "shimmfa.sync"):
        offline.sync_once()
        offline.sync_once()
    assert "technician bundle EXPIRED" in caplog.text
    (expired,) = side.events("bundle_expired")  # once, not at every attempt
    assert expired.fields["technicians"] == 1 and expired.fields["age_s"] > MAX_AGE
    assert login(side, tid, secret, clock.now + 30) == AuthResult.BAD_USER

    back = syncer(side, clock=clock)
    back._expired_reported = True  # the same daemon's syncer, which reported it
    with caplog.at_level(logging.WARNING, "shimmfa.sync"):
        assert back.sync_once().ok
    assert "valid again" in caplog.text
    assert login(side, tid, secret, clock.now + 60) == AuthResult.OK


def test_the_shims_own_technician_wins_over_centrals(
    side: ShimSide, caplog: pytest.LogCaptureFixture
) -> None:
    tid = f"dee-{side.shim_id}@vendor"
    central_secret = enrol_active(side.server, tid, time.time())
    assign(side.server, tid, side.shim_id)
    local_secret = base64.b32encode(b"the-shims-own-secret").decode()
    side.store.add_technician(TechnicianRecord(tid, local_secret), time.time())
    sync = syncer(side, local_ids=lambda: set(side.store.technician_ids()))
    with caplog.at_level(logging.WARNING, "shimmfa.sync"):
        assert sync.sync_once().ok
    assert f"technician {tid} from central is shadowed" in caplog.text
    assert side.events("bundle_applied")[0].fields["shadowed"] == tid
    now = time.time()
    assert login(side, tid, central_secret, now) == AuthResult.BAD_CODE
    assert login(side, tid, local_secret, now + 30) == AuthResult.OK


def test_a_shim_central_has_no_recipient_for_is_told_what_to_register(
    side: ShimSide, caplog: pytest.LogCaptureFixture
) -> None:
    bare_id = f"bare-{side.shim_id}"
    token = side.root / "bare.token"
    side.server.register_shim(bare_id, side.keys.public_key_text, credential_file=token)
    section = side.settings.central.model_copy(update={"token_file": str(token)})
    client = CentralClient(section, bare_id)
    sync = BundleSync(
        client,
        SyncedTechnicians(side.store),
        side.alerts,
        shim_id=bare_id,
        pinned=pinned_key(central_keys(side.server).public_key_text),
        identity=side.keys.identity,
        period=300,
        max_age=MAX_AGE,
    )
    try:
        with caplog.at_level(logging.ERROR, "shimmfa.sync"):
            result = sync.sync_once()
    finally:
        client.close()
    assert not result.ok and "no_recipient" in result.detail
    assert "age recipient" in caplog.text and "shimmfa keys show" in caplog.text
    assert side.events("bundle_rejected") == []  # central said no: nothing to refuse
    assert held(side)[:2] == (0, [])


def test_the_thread_syncs_at_start_and_every_period_and_stops_promptly(side: ShimSide) -> None:
    tid = f"eve-{side.shim_id}@vendor"
    secret = enrol_active(side.server, tid, time.time())
    sync = syncer(side, period=1.0)
    sync.start()
    try:
        wait_for(lambda: sync.attempts >= 1, "the sync at start", 10)
        assign(side.server, tid, side.shim_id)  # picked up by a later period's sync
        wait_for(lambda: tid in SyncedTechnicians(side.store).ids(), "the technician synced", 10)
        assert login(side, tid, secret, time.time()) == AuthResult.OK
    finally:
        started = time.monotonic()
        assert sync.stop(timeout=2.0)
    assert time.monotonic() - started < 1.0
    assert json.dumps([e.fields for e in side.events("bundle_rejected")]) == "[]"
