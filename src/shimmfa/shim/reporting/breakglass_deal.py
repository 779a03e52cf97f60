"""The shim's break-glass deal registered with central
(`POST /api/v1/shims/<id>/breakglass`, as the shim), so that central can
take break-glass requests for this shim and let the holders approve them.

Rules:
- What goes is the deal's public record (state/breakglass.py) in central's
  form: each group with its role (`clinical` -> `clinical_engineering`,
  `infosec` -> `infosec`) and its holders by name (the operator ID at
  central who approves with that Toc) -> the age recipient the Toc was
  sealed to. Never a Toc or the secret: the shim holds no Toc anyway.
- Idempotent: the same record again is fine (central answers 200). A
  refusal says central's code and message (`wrong_shim`, `conflict`,
  `superseded`, `malformed`: a holder name central cannot take, say).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from shimmfa.errors import QuorumError
from shimmfa.shim.reporting.central import CentralClient
from shimmfa.shim.settings import Settings
from shimmfa.shim.state.breakglass import provisioned
from shimmfa.shim.state.store import StateStore

__all__ = ["ROLE_OF_GROUP", "Registered", "register", "registration_body"]

ROLE_OF_GROUP = {"clinical": "clinical_engineering", "infosec": "infosec"}


@dataclass(frozen=True, slots=True)
class Registered:
    status: int  # 201 registered now (replacing an older deal), 200 already
    deal_id: str
    replaced: str | None


def registration_body(deal: Mapping[str, object]) -> dict[str, object]:
    """Central's body for the stored record `deal`
    (`{"groups": {NAME: {group_id, threshold, size}}, "note",
    "holders": {"GROUP/NAME": recipient}}`). QuorumError for a record that
    does not have that shape."""
    groups, holders = deal.get("groups"), deal.get("holders")
    if not isinstance(groups, dict) or not isinstance(holders, dict):
        raise QuorumError("the stored break-glass deal has no groups or holders")
    body: dict[str, object] = {}
    for name, spec in groups.items():
        if name not in ROLE_OF_GROUP or not isinstance(spec, dict):
            raise QuorumError(f"the stored break-glass deal has an unknown group {name!r}")
        prefix = f"{name}/"
        members = {
            str(full)[len(prefix) :]: str(recipient)
            for full, recipient in holders.items()
            if str(full).startswith(prefix)
        }
        body[name] = {
            "group_id": spec.get("group_id"),
            "threshold": spec.get("threshold"),
            "size": spec.get("size"),
            "role": ROLE_OF_GROUP[name],
            "holders": members,
        }
    return {"note": str(deal.get("note", "")), "groups": body}


def register(settings: Settings, store: StateStore) -> Registered:
    """Register the provisioned deal with central. QuorumError when there
    is none or central refuses it; OSError when central cannot be asked."""
    if settings.central.url is None:
        raise QuorumError("central.url is not set: there is no central to register with")
    found = provisioned(store)
    if found is None:
        raise QuorumError("break-glass is not provisioned (`shimmfa breakglass provision`)")
    content = json.dumps(registration_body(found.deal)).encode()
    client = CentralClient(settings.central, settings.shim.id)
    try:
        answer = client.request(
            "POST", "/breakglass", content=content, content_type="application/json"
        )
    finally:
        client.close()
    if answer.status not in (200, 201):
        raise QuorumError(f"central refused the break-glass deal: {answer.describe()}")
    replaced = answer.body.get("replaced")
    return Registered(
        answer.status,
        str(answer.body.get("deal_id", "")),
        str(replaced) if replaced else None,
    )
