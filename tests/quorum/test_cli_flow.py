"""Break-glass from the command line, end to end: the dealer deals 2 of
clinical engineering AND 1 of information security, the oracle (`serve`
over HTTPS, the deal registered) releases the code only when both groups
approve (`open`, `approve`, `totp`); the code is the one `oathtool` gives
for the secret; a clinical quorum alone and an infosec holder alone get
nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quorum.kit import (
    SECRET,
    age_decrypt,
    age_keygen,
    needs_age,
    needs_oathtool,
    oathtool,
    shimmfa,
)
from quorum.server import OracleServer

pytestmark = [pytest.mark.e2e, needs_oathtool]
HOLDERS = {"clinical": ["ann", "bob", "cat"], "infosec": ["ivan", "ines"]}


@pytest.fixture(scope="module")
def deal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deal")
    players: list[str] = []
    for group, names in HOLDERS.items():
        for name in names:
            done = shimmfa("quorum", "keygen", "-o", directory / f"{name}.key")
            players += ["--player", f"{group}/{name}={done.stdout.strip()}"]
    (secret := directory / "secret").write_text(SECRET)
    secret.chmod(0o600)
    done = shimmfa(
        "quorum", "deal", "--secret-file", secret, "--group", "clinical:2",
        "--group", "infosec:1", *players, "--note", "pump 7 break-glass",
        "-o", directory / "deal.json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture(scope="module")
def oracle(deal_dir: Path) -> Iterator[OracleServer]:
    server = OracleServer(
        deal_dir / "oracle", "--ephemeral", "--register", str(deal_dir / "deal.json"), tls=True
    )
    with server.running():
        yield server


def client_args(oracle: OracleServer) -> list[str | Path]:
    assert oracle.ca_file is not None
    return ["--url", oracle.url, "--ca-file", oracle.ca_file]


def apply(oracle: OracleServer, deal_dir: Path, who: str, kek: Path) -> dict[str, Any]:
    """`shimmfa quorum open` as holder `who` (GROUP/NAME)."""
    name = who.split("/")[1]
    done = shimmfa(
        "quorum", "open", "--toc-file", deal_dir / "deal.json", "--player", who,
        "--identity", deal_dir / f"{name}.key", "--kek-file", kek, *client_args(oracle),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    session: dict[str, Any] = json.loads(done.stdout)
    assert "kek" not in session and kek.read_text().strip() not in done.stdout
    assert kek.stat().st_mode & 0o077 == 0
    return session


def approve(oracle: OracleServer, deal_dir: Path, session: dict[str, Any], who: str) -> None:
    done = shimmfa(
        "quorum", "approve", "--session", session["id"], "--tek", session["tek"],
        "--toc-file", deal_dir / "deal.json", "--player", who,
        "--identity", deal_dir / f"{who.split('/')[1]}.key", *client_args(oracle),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sent a Toc of group" in done.stdout


def totp(oracle: OracleServer, session: dict[str, Any], kek: Path) -> Any:
    return shimmfa(
        "quorum", "totp", "--session", session["id"], "--kek-file", kek, *client_args(oracle)
    )


def test_a_clinical_quorum_alone_gets_no_code(
    oracle: OracleServer, deal_dir: Path, tmp_path: Path
) -> None:
    session = apply(oracle, deal_dir, "clinical/ann", kek := tmp_path / "kek")
    approve(oracle, deal_dir, session, "clinical/bob")
    approve(oracle, deal_dir, session, "clinical/cat")
    refused = totp(oracle, session, kek)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "409 below_threshold" in refused.stderr and "has 0 of the 1" in refused.stderr


def test_an_infosec_holder_alone_gets_no_code(
    oracle: OracleServer, deal_dir: Path, tmp_path: Path
) -> None:
    session = apply(oracle, deal_dir, "infosec/ivan", kek := tmp_path / "kek")
    assert len(session["groups"]) == 2 and session["tocs_threshold"] == 3
    refused = totp(oracle, session, kek)
    assert refused.returncode == 1 and "has 0 of the 2" in refused.stderr


def test_clinical_and_infosec_together_get_the_code_once(
    oracle: OracleServer, deal_dir: Path, tmp_path: Path
) -> None:
    session = apply(oracle, deal_dir, "clinical/cat", kek := tmp_path / "kek")
    approve(oracle, deal_dir, session, "infosec/ines")
    approve(oracle, deal_dir, session, "clinical/ann")
    status = shimmfa("quorum", "status", "--session", session["id"], *client_args(oracle))
    assert json.loads(status.stdout)["complete"] is True
    before = time.time()
    released = totp(oracle, session, kek)
    after = time.time()
    assert released.returncode == 0, released.stderr
    until = re.search(r"valid until (\S+);", released.stderr)
    assert until is not None
    step_start = dt.datetime.fromisoformat(until.group(1)).timestamp() - 30
    assert int(before) // 30 * 30 <= step_start <= int(after) // 30 * 30
    assert released.stdout.strip() == oathtool(SECRET, step_start)
    again = totp(oracle, session, kek)
    assert again.returncode == 1 and "410 released" in again.stderr


def test_the_client_refuses_a_bad_session_id_before_sending_it(
    oracle: OracleServer, tmp_path: Path
) -> None:
    (kek := tmp_path / "kek").write_text("AAAA")
    done = totp(oracle, {"id": "../../admin"}, kek)
    assert done.returncode == 1 and "16 base32 characters" in done.stderr


@needs_age
def test_seal_prints_a_holders_toc_sealed_to_a_tek_for_the_central_approval_page(
    deal_dir: Path, tmp_path: Path
) -> None:
    """What a holder pastes into central's page: Debian's age opens it with
    the session's identity, and it is the holder's own Toc."""
    tek = age_keygen(tmp_path / "session.key")
    done = shimmfa(
        "quorum", "seal", "--tek", tek, "--toc-file", deal_dir / "deal.json",
        "--player", "infosec/ivan", "-i", deal_dir / "ivan.key",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    opened = age_decrypt(done.stdout, tmp_path / "session.key")
    assert opened.returncode == 0, opened.stderr
    toc = json.loads(opened.stdout)
    deal = json.loads((deal_dir / "deal.json").read_text())
    assert toc["group_id"] == deal["groups"]["infosec"]["group_id"]
    assert "AGE-SECRET-KEY" not in done.stdout + done.stderr
