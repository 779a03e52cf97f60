"""Technician bundles (SQLite and PostgreSQL), checked as the shim will
check them: the signature over the fixed context with central's pinned
key, the age ciphertext opened with the shim's identity, exactly the
active technicians assigned to it (directly or through a group), a version
that only goes up (across restarts too); another shim's ID, an operator's
token or no credential are refused; a shim without a recipient gets 409."""

from __future__ import annotations

import base64
import json
from typing import Any

import pyrage
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from pyrage import x25519

from central.conftest import auth
from central.kit import ManualClock, SimShim, code_at
from central.test_technicians import enrol, secret_of
from shimmfa.central.app import create_app
from shimmfa.central.context import Central

CONTEXT = b"shimmfa technician bundle v1\n"


@pytest.fixture
def identity() -> x25519.Identity:
    return x25519.Identity.generate()


@pytest.fixture
def synced(client: TestClient, admin: dict[str, str], identity: x25519.Identity) -> SimShim:
    """A registered shim with its age recipient."""
    sim = SimShim("shim-b")
    body = {**sim.registration(), "age_recipient": str(identity.to_public())}
    answer = client.post("/api/v1/shims", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    assert answer.json()["age_recipient"] == str(identity.to_public())
    sim.credential = answer.json()["credential"]
    return sim


def open_bundle(answer: dict[str, Any], identity: x25519.Identity, pinned: str) -> dict[str, Any]:
    """What the shim does: check the signer is the pinned key and the
    signature, then decrypt."""
    assert set(answer) == {"bundle", "sig", "signed_by"}
    assert answer["signed_by"] == pinned
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(pinned.split(":", 1)[1]))
    signature = base64.b64decode(answer["sig"], validate=True)
    assert len(signature) == 64
    key.verify(signature, CONTEXT + answer["bundle"].encode("ascii"))
    assert answer["bundle"].startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    document: dict[str, Any] = json.loads(pyrage.decrypt(answer["bundle"].encode(), [identity]))
    return document


def active(client: TestClient, admin: dict[str, str], clock: ManualClock, tid: str) -> None:
    secret = secret_of(enrol(client, admin, tid))
    code = code_at(secret, clock())
    assert client.post(f"/api/v1/technicians/{tid}/confirm", json={"code": code},
                       headers=admin).status_code == 200  # fmt: skip


def test_the_bundle_holds_exactly_the_active_technicians_assigned_to_the_shim(
    client: TestClient,
    central: Central,
    clock: ManualClock,
    admin: dict[str, str],
    synced: SimShim,
    shim: SimShim,
    identity: x25519.Identity,
) -> None:
    url = "/api/v1/shims/shim-b/technicians"
    for tid in ("direct", "grouped", "elsewhere", "revoked"):
        active(client, admin, clock, tid)
    enrol(client, admin, "pending")
    client.post("/api/v1/groups", json={"name": "ICU"}, headers=admin)
    client.post("/api/v1/groups/ICU/members", json={"shim_id": "shim-b"}, headers=admin)
    for tid, body in [
        ("direct", {"shim_id": "shim-b"}),
        ("grouped", {"group": "ICU"}),
        ("elsewhere", {"shim_id": "shim-a"}),
        ("revoked", {"shim_id": "shim-b"}),
        ("pending", {"shim_id": "shim-b"}),
    ]:
        answer = client.post(f"/api/v1/technicians/{tid}/assignments", json=body, headers=admin)
        assert answer.status_code == 201, answer.text
    client.post("/api/v1/technicians/revoked/revoke", headers=admin)
    answer = client.get(url, headers=synced.auth)
    assert answer.status_code == 200, answer.text
    document = open_bundle(answer.json(), identity, central.keys.public_key_text)
    assert set(document) == {"shim_id", "version", "issued_at", "technicians"}
    assert document["shim_id"] == "shim-b" and document["issued_at"] == pytest.approx(clock())
    people = {t["technician_id"]: t for t in document["technicians"]}
    assert set(people) == {"direct", "grouped"}
    entry = people["direct"]
    assert {k: v for k, v in entry.items() if k != "totp_secret"} == {
        "technician_id": "direct", "algorithm": "SHA1", "digits": 6, "period": 30,
        "roles": [], "name": "Ada Field", "company": "Vendor",
    }  # fmt: skip
    assert len(base64.b32decode(entry["totp_secret"])) == 20
    # revoking takes a technician out at the next pull
    client.post("/api/v1/technicians/direct/revoke", headers=admin)
    again = open_bundle(client.get(url, headers=synced.auth).json(), identity,
                        central.keys.public_key_text)  # fmt: skip
    assert [t["technician_id"] for t in again["technicians"]] == ["grouped"]
    assert again["version"] > document["version"]


def test_the_version_only_goes_up_across_calls_and_restarts(
    client: TestClient,
    central: Central,
    clock: ManualClock,
    synced: SimShim,
    identity: x25519.Identity,
) -> None:
    url = "/api/v1/shims/shim-b/technicians"
    pinned = central.keys.public_key_text
    versions = [
        open_bundle(client.get(url, headers=synced.auth).json(), identity, pinned)["version"]
        for _ in range(3)
    ]
    assert versions == sorted(set(versions))
    clock.advance(-3600)  # the clock went back: still higher
    later = open_bundle(client.get(url, headers=synced.auth).json(), identity, pinned)["version"]
    assert later > versions[-1]
    restarted = Central(central.settings, clock=clock)
    try:
        app = create_app(restarted.settings, central=restarted, monitor=False)
        with TestClient(app) as fresh:
            after = open_bundle(fresh.get(url, headers=synced.auth).json(), identity, pinned)
        assert after["version"] > later
    finally:
        restarted.close()


def test_a_forged_or_wrong_shim_request_is_refused(
    client: TestClient,
    central: Central,
    admin: dict[str, str],
    synced: SimShim,
    shim: SimShim,
    identity: x25519.Identity,
) -> None:
    url = "/api/v1/shims/shim-b/technicians"
    other = client.get(url, headers=shim.auth)  # shim-a's credential asks for shim-b's
    assert (other.status_code, other.json()["code"]) == (403, "wrong_shim")
    assert client.get(url, headers=admin).status_code == 401  # an operator is not a shim
    assert client.get(url).status_code == 401
    forged = client.get(url, headers=auth("sms_" + "A" * 43))
    assert forged.status_code == 401
    # what a shim sees if the bundle or its signature was altered on the way
    answer = client.get(url, headers=synced.auth).json()
    key = Ed25519PublicKey.from_public_bytes(central.keys.public_key_raw)
    altered = answer["bundle"].replace("A", "B", 1)
    with pytest.raises(InvalidSignature):
        key.verify(base64.b64decode(answer["sig"]), CONTEXT + altered.encode())
    with pytest.raises(InvalidSignature):  # the context is part of what is signed
        key.verify(base64.b64decode(answer["sig"]), answer["bundle"].encode())


def test_a_shim_without_a_recipient_gets_409_until_an_admin_sets_one(
    client: TestClient, central: Central, admin: dict[str, str], shim: SimShim,
    tokens: dict[str, str],
) -> None:  # fmt: skip
    url = "/api/v1/shims/shim-a/technicians"
    answer = client.get(url, headers=shim.auth)
    assert (answer.status_code, answer.json()["code"]) == (409, "no_recipient")
    identity = x25519.Identity.generate()
    put = "/api/v1/shims/shim-a/age-recipient"
    bad = client.put(put, json={"age_recipient": "age1nonsense"}, headers=admin)
    assert bad.status_code == 422
    refused = client.put(put, json={"age_recipient": str(identity.to_public())},
                         headers=auth(tokens["clinical_engineering"]))  # fmt: skip
    assert refused.status_code == 403
    ok = client.put(put, json={"age_recipient": str(identity.to_public())}, headers=admin)
    assert ok.status_code == 204
    document = open_bundle(client.get(url, headers=shim.auth).json(), identity,
                           central.keys.public_key_text)  # fmt: skip
    assert document["technicians"] == []
    updated = client.get("/api/v1/events", params={"kind": "shim_updated"}, headers=admin)
    assert updated.json()["items"][0]["shim_id"] == "shim-a"
