"""Technician bundles: what a shim pulls (`GET /api/v1/shims/{id}/technicians`,
as itself) to know who may log in at its port.

The protocol (fixed; the shim side verifies exactly this):
- The answer is `{"bundle": <ASCII-armored age ciphertext>, "sig": <standard
  base64 of a 64-byte Ed25519 signature>, "signed_by": "ed25519:<base64 of
  central's raw public key>"}`. The signature is over
  `b"shimmfa technician bundle v1\\n" + bundle.encode("ascii")`
  (`keys.BUNDLE_CONTEXT`), made with central's `signing.pem`.
- The ciphertext is encrypted (pyrage, armored) to the shim's registered
  `age_recipient`; its plaintext is UTF-8 JSON `{"shim_id", "version",
  "issued_at", "technicians": [{"technician_id", "totp_secret" (base32),
  "algorithm": "SHA1", "digits": 6, "period": 30, "roles": [], "name",
  "company"}]}` with the technicians that are `active` and assigned to the
  shim directly or through one of its groups (`groups.valid_at_shim`).
- `version` is strictly increasing across calls for a shim, across
  restarts and workers: each issue stores `max(last + 1, now in ms)` in the
  shim's row (`shims.bundle_version`) under its row lock. Being the time in
  milliseconds, it also stays above what a shim has seen after central's
  database is restored from an older backup.
- Another shim's ID than the credential's: 403 `wrong_shim`; a shim without
  `age_recipient`: 409 `no_recipient`. Issuing is not audited (every shim
  pulls every sync period); changes to what a bundle holds are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyrage
from pyrage import x25519
from sqlalchemy import select

from shimmfa.central.context import Central, ShimIdentity
from shimmfa.central.credentials import check_age_recipient
from shimmfa.central.groups import valid_at_shim
from shimmfa.central.models import ShimRow
from shimmfa.central.problems import Conflict, Forbidden, Invalid, NotFound
from shimmfa.central.records import record
from shimmfa.central.technicians import open_secret

__all__ = ["Bundle", "bundle_plaintext", "issue_bundle", "set_age_recipient"]


@dataclass(frozen=True, slots=True)
class Bundle:
    bundle: str
    sig: str
    signed_by: str
    version: int
    technicians: int

    def answer(self) -> dict[str, str]:
        return {"bundle": self.bundle, "sig": self.sig, "signed_by": self.signed_by}


def bundle_plaintext(
    shim_id: str, version: int, issued_at: float, technicians: list[dict[str, object]]
) -> bytes:
    document = {
        "shim_id": shim_id,
        "version": version,
        "issued_at": issued_at,
        "technicians": technicians,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def issue_bundle(central: Central, identity: ShimIdentity, shim_id: str) -> Bundle:
    if shim_id != identity.shim_id:
        raise Forbidden("a shim may fetch only its own technician bundle", "wrong_shim")
    keys = central.keys
    now = central.clock()
    with central.sessions.begin() as session:
        shim = session.scalars(
            select(ShimRow).where(ShimRow.pk == identity.pk).with_for_update()
        ).first()
        if shim is None:
            raise NotFound(f"no shim {shim_id!r} is registered")
        if shim.age_recipient is None:
            raise Conflict(
                f"shim {shim_id!r} has no age recipient registered: set it with "
                f"PUT /api/v1/shims/{shim_id}/age-recipient (its `shimmfa keys show`)",
                "no_recipient",
            )
        version = max(int(shim.bundle_version or 0) + 1, int(now * 1000))
        shim.bundle_version = version
        recipient = shim.age_recipient
        rows = valid_at_shim(session, shim.pk)
    technicians: list[dict[str, object]] = [
        {
            "technician_id": row.technician_id,
            "totp_secret": open_secret(central, row),
            "algorithm": "SHA1",
            "digits": 6,
            "period": 30,
            "roles": [],
            "name": row.name,
            "company": row.company,
        }
        for row in rows
    ]
    plain = bundle_plaintext(shim_id, version, now, technicians)
    armored = pyrage.encrypt(plain, [x25519.Recipient.from_str(recipient)], armored=True)
    text = armored.decode("ascii") if isinstance(armored, bytes) else str(armored)
    return Bundle(text, keys.sign_bundle(text), keys.public_key_text, version, len(rows))


def set_age_recipient(central: Central, shim_id: str, recipient: str, *, actor: str) -> None:
    """Register (or replace) a shim's age recipient (audited)."""
    try:
        check_age_recipient(recipient)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    now = central.clock()
    with central.sessions.begin() as session:
        shim = session.scalars(
            select(ShimRow).where(ShimRow.shim_id == shim_id).with_for_update()
        ).first()
        if shim is None:
            raise NotFound(f"no shim {shim_id!r} is registered")
        before = shim.age_recipient
        shim.age_recipient = recipient
        record(
            session,
            "shim_updated",
            now=now,
            shim_id=shim_id,
            fields={"by": actor, "age_recipient": recipient, "previous": before},
            forward=central.forward,
        )
