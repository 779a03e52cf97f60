"""`shimmfa state recover` (`shimmfa.shim.admin.recover`) on a real state
DB: after a lost state, no code from before the recovery logs in, neither
a technician's first factor nor any further factor of their MFA chain."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pyotp

from shimmfa.shim import admin
from shimmfa.shim.config import parse_settings
from shimmfa.shim.state.anchor import provision_keys
from shimmfa.shim.state.factors import ChainStore
from shimmfa.shim.state.store import StateStore

ADMIN = "admin@example.org"
ALICE = "alice@example.org"
ADMIN_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105 - test secret
PRIMARY = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - test secret
BACKUP = "MJXWELLTMVRXEZLUFVXWMLJSGAWWE6LU"  # noqa: S105 - test secret


def settings(root: Path) -> Any:
    return parse_settings(
        {
            "shim": {"id": "shim-1"},
            "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
            "storage": {"root": str(root)},
            "technicians": [
                {"technician_id": ADMIN, "totp_secret": ADMIN_SECRET, "roles": ["admin"]},
                {
                    "technician_id": ALICE,
                    "totp_secret": PRIMARY,
                    "factors": [{"label": "Backup", "totp_secret": BACKUP}],
                },
            ],
        }
    )


def test_a_recovery_raises_every_chain_factors_replay_floor(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    provision_keys(root, time.time())
    StateStore(root).close()
    shutil.rmtree(root / "state")  # the state DB is lost; the anchor remembers it
    config = settings(root)
    assert not admin.examine(config).sound

    before = int(time.time() // 30)
    done = admin.recover(config, ADMIN, pyotp.TOTP(ADMIN_SECRET).now(), "disk replaced")

    assert done["replay_floors"] == 2
    store = StateStore(root)
    try:
        assert ChainStore(store).get(ALICE).floor("Backup") >= before
        assert admin.examine(config).sound
    finally:
        store.close()
