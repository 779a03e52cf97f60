"""What the break-glass tests share: a shim's deal as `shimmfa quorum deal`
makes it (2 of 3 clinical engineers AND 1 of 2 infosec officers, each Toc
sealed to its holder's own age identity), the public record the shim
registers with central, and each holder's own Toc, sealed to a session's
TEK as a holder does it on their machine (`shimmfa quorum seal`, or
Debian's `age -r TEK -a`)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from pyrage import x25519

from shimmfa.core.toc import Toc
from shimmfa.core.totp import generate_totp_secret
from shimmfa.quorum.age_tocs import open_toc, seal_toc
from shimmfa.quorum.dealing import PlayerSpec, deal_document

CLINICAL = ("ann", "bob", "cat")
INFOSEC = ("ivan", "ines")
ROLE = {"clinical": "clinical_engineering", "infosec": "infosec"}


@dataclass(frozen=True)
class Holder:
    name: str
    group: str  # the group's label: clinical or infosec
    identity: x25519.Identity = field(default_factory=x25519.Identity.generate, repr=False)

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())

    @property
    def role(self) -> str:
        return ROLE[self.group]


class Deal:
    """A dealt break-glass secret and its holders (see the module docstring)."""

    def __init__(self, secret: str | None = None, note: str = "pump 7 break-glass") -> None:
        self.secret = secret or generate_totp_secret()
        self.holders = {n: Holder(n, "clinical") for n in CLINICAL} | {
            n: Holder(n, "infosec") for n in INFOSEC
        }
        players = [PlayerSpec(h.name, h.group, h.recipient) for h in self.holders.values()]
        self.document = deal_document(
            self.secret, players, groups=[("clinical", 2), ("infosec", 1)], note=note
        )

    def group_id(self, label: str) -> str:
        return str(self.document["groups"][label]["group_id"])

    def record(self) -> dict[str, Any]:
        """The public record the shim registers: the dealer's output without
        its Tocs, with each group's role and holders."""
        groups = {}
        for label, spec in self.document["groups"].items():
            holders = {h.name: h.recipient for h in self.holders.values() if h.group == label}
            groups[label] = {**spec, "role": ROLE[label], "holders": holders}
        return {"note": self.document["note"], "groups": groups}

    def sealed_to_holder(self, name: str) -> str:
        holder = self.holders[name]
        return str(self.document["tocs"][f"{holder.group}/{name}"])

    def toc(self, name: str) -> Toc:
        """The holder's own Toc, opened with the holder's identity."""
        return open_toc(self.sealed_to_holder(name), [self.holders[name].identity])

    def sealed(self, name: str, tek: str) -> str:
        """The holder's Toc re-sealed to a session's TEK (a fresh ciphertext each time)."""
        return seal_toc(self.toc(name), tek)


def age_seal(plaintext: str, tek: str) -> str:
    """`age -r TEK -a`: Debian's age seals a Toc to a session's TEK."""
    assert shutil.which("age") is not None  # noqa: S101 - the callers are marked needs_age
    return subprocess.run(
        ["age", "-r", tek, "-a"], input=plaintext, capture_output=True, text=True, check=True,
        timeout=30,
    ).stdout  # fmt: skip


class BreakGlass:
    """A registered shim with a registered deal, and an API token for each
    holder (named like the holder, in the holder's role), for the
    requester `rita` (clinical engineering) and for an admin."""

    def __init__(self, client: Any, central: Any, shim: Any) -> None:
        from shimmfa.central import access

        self.client, self.central, self.shim = client, central, shim
        self.deal = Deal()
        answer = client.post(
            f"/api/v1/shims/{shim.shim_id}/breakglass", json=self.deal.record(), headers=shim.auth
        )
        assert answer.status_code == 201, answer.text
        people = {h.name: h.role for h in self.deal.holders.values()}
        people |= {"rita": "clinical_engineering", "root": "admin", "audrey": "auditor"}
        self.tokens = {
            name: access.create_token(central, name, role, actor="test")[1]
            for name, role in people.items()
        }

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def open(self, who: str = "rita", ttl: int = 3600) -> tuple[dict[str, Any], str]:
        answer = self.client.post(
            "/api/v1/breakglass/requests",
            json={"shim_id": self.shim.shim_id, "reason": "infusion pump 7 alarms", "ttl": ttl},
            headers=self.as_(who),
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["request"], answer.json()["kek"]

    def approve(self, request: dict[str, Any], name: str, toc_of: str | None = None) -> Any:
        sealed = self.deal.sealed(toc_of or name, request["tek"])
        return self.client.post(
            f"/api/v1/breakglass/requests/{request['id']}/approvals",
            json={"encrypted_toc": sealed},
            headers=self.as_(name),
        )

    def code(self, request: dict[str, Any], kek: str, who: str = "rita") -> Any:
        return self.client.post(
            f"/api/v1/breakglass/requests/{request['id']}/code",
            json={"kek": kek},
            headers=self.as_(who),
        )

    def state(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.get(
            f"/api/v1/breakglass/requests/{request['id']}", headers=self.as_("audrey")
        )
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document

    def events(self, prefix: str = "breakglass_") -> list[dict[str, Any]]:
        items = self.client.get(
            "/api/v1/events", params={"source": "central", "limit": 1000}, headers=self.as_("root")
        ).json()["items"]
        return [e for e in items if e["kind"].startswith(prefix)]
