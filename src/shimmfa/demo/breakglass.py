"""The demo's break-glass: the shim's emergency secret dealt to holders of
clinical engineering (2 of 3) AND information security (1 of 2), the deal
registered with the demo's central service, and each holder an API token
there in their department's role, so that a request can be approved and
its code used at the PTY, then reviewed by both departments.

Rules: everything goes through the commands an operator runs (`shimmfa
breakglass provision`, which registers the deal with central; `shimmfa
quorum approve` against the oracle mounted at `/quorum`); every key, token
and Toc is a file of mode 0600 in the demo's `breakglass/` folder.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrage import x25519

from shimmfa.demo.central import DemoCentral, write_private
from shimmfa.errors import DemoError
from shimmfa.shim.reporting.breakglass_deal import ROLE_OF_GROUP

__all__ = ["HOLDERS", "SHIM_ADMIN", "DemoBreakglass"]

SHIM_ADMIN = "shimadmin@demo.example.org"  # the shim's admin, who provisions break-glass
HOLDERS = {
    "clinical": ("clara", "carl", "cody"),  # clinical engineering: 2 of 3
    "infosec": ("iris", "ivo"),  # information security: 1 of 2
}
THRESHOLDS = {"clinical": 2, "infosec": 1}


def _shimmfa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "shimmfa", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class DemoBreakglass:
    workdir: Path
    central: DemoCentral
    tokens: dict[str, Path] = field(default_factory=dict)

    @property
    def deal(self) -> Path:
        return self.workdir / "deal.json"

    def key(self, name: str) -> Path:
        return self.workdir / f"{name}.agekey"

    def provision(self, config: Path, admin_code: str) -> str:
        """Holders' keys and central tokens, then `shimmfa breakglass
        provision` as the shim's admin; what it printed."""
        self.workdir.mkdir(mode=0o700, exist_ok=True)
        players = []
        for group, names in HOLDERS.items():
            for name in names:
                identity = x25519.Identity.generate()
                write_private(self.key(name), str(identity))
                players += ["--player", f"{group}/{name}={identity.to_public()}"]
                token = self.central.create_token(name, ROLE_OF_GROUP[group])
                self.tokens[name] = write_private(self.workdir / f"{name}.token", token)
        self.deal.unlink(missing_ok=True)
        done = _shimmfa(
            "breakglass", "provision", "--config", str(config), "--operator", SHIM_ADMIN,
            "--code", admin_code,
            *[f"--group={g}:{t}" for g, t in THRESHOLDS.items()],
            *players, "--note", "demo infusion pump break-glass", "-o", str(self.deal),
        )  # fmt: skip
        if done.returncode != 0 or "central: deal registered" not in done.stdout:
            raise DemoError(f"breakglass provision: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def approve(self, request: dict[str, Any], holder: str) -> None:
        """`holder` (GROUP/NAME) approves at the oracle mounted in central."""
        name = holder.split("/")[1]
        done = _shimmfa(
            "quorum", "approve", "--url", f"{self.central.url}/quorum",
            "--session", str(request["session_id"]), "--tek", str(request["tek"]),
            "--toc-file", str(self.deal), "--player", holder, "--identity", str(self.key(name)),
            "--token-file", str(self.tokens[name]), "--ca-file", str(self.central.ca_file),
        )  # fmt: skip
        if done.returncode != 0:
            raise DemoError(f"{holder}'s approval: {done.stderr.strip()}")

    def as_holder(self, name: str, method: str, path: str, body: dict[str, Any]) -> Any:
        token = self.tokens[name].read_text().strip()
        return self.central.call(method, path, body, token=token)
