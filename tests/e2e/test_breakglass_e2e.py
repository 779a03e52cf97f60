"""Break-glass end to end (issue 16 item 5): `shimmfa breakglass provision`
deals the shim's emergency secret as 2 of clinical engineering AND 1 of
information security; the real oracle (`shimmfa quorum serve`) releases a
code once both groups approved; `breakglass <code>` at the real daemon's
PTY opens a session flagged break-glass (the notice on the port, the
recording's header, `session_start`) and raises two alerts, one per
audience, at once, to the SIEM and to central; the same code never passes
again; a group alone cannot make a working code; provisioning needs an
admin's code."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from siem_file import read_events

from central.server import CentralServer
from quorum.kit import shimmfa
from quorum.server import OracleServer
from shimmfa.core.gate import EMERGENCY_NOTICE
from shimmfa.core.recording_reader import verify
from shimmfa.core.toc import combine_tocs
from shimmfa.core.totp import decode_secret, totp_code
from shimmfa.quorum.age_tocs import read_identity_file
from shimmfa.quorum.holder import load_toc
from waiting import wait_for

pytestmark = pytest.mark.e2e

ADMIN = "alice@example.org"
SHIM = "e2e-shim"
HOLDERS = {"clinical": ["ann", "bob", "cat"], "infosec": ["ivan", "ines"]}
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
SUCCESS = re.compile(rb"\r\nAuthenticated as breakglass; session (\S+)\r\n")


def holders(directory: Path) -> list[str]:
    """An age identity per holder (`shimmfa quorum keygen`); --player args."""
    players: list[str] = []
    for group, names in HOLDERS.items():
        for name in names:
            done = shimmfa("quorum", "keygen", "-o", directory / f"{name}.key")
            assert done.returncode == 0, done.stderr
            players += ["--player", f"{group}/{name}={done.stdout.strip()}"]
    return players


def emergency_shim(make_shim, tmp_path: Path, central: CentralServer | None = None):
    siem = tmp_path / "siem.jsonl"
    rig = make_shim(
        start=False, gate={"echo": False}, siem={"transport": "file", "path": str(siem)}
    )
    for entry in rig.settings["technicians"]:
        if entry["technician_id"] == ADMIN:
            entry["roles"] = ["admin"]
    if central is not None:
        shown = rig.cli("keys", "init", "--config", str(rig.config))
        key = re.search(r"signing key \(Ed25519\): (ed25519:\S+)", shown.stdout)
        assert key is not None, shown.stdout
        token = tmp_path / "central.token"
        central.register_shim(SHIM, key[1], credential_file=token)
        rig.settings["central"] = {
            "url": central.base_url,
            "token_file": str(token),
            "ca_file": str(central.ca_file),
        }
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    rig.siem = siem
    return rig


def provision(rig, tmp_path: Path, code: str) -> Any:
    return rig.cli(
        "breakglass", "provision", "--config", str(rig.config), "--operator", ADMIN,
        "--code", code, "--group", "clinical:2", "--group", "infosec:1",
        *holders(tmp_path), "--note", "e2e pump", "-o", str(tmp_path / "deal.json"),
    )  # fmt: skip


def release(oracle: OracleServer, tmp_path: Path, who: list[str]) -> Any:
    """The first of `who` applies, the others approve; `quorum totp`."""
    deal, kek = tmp_path / "deal.json", tmp_path / "kek"
    kek.unlink(missing_ok=True)
    first = who[0]
    opened = shimmfa(
        "quorum", "open", "--toc-file", deal, "--player", first,
        "--identity", tmp_path / f"{first.split('/')[1]}.key", "--kek-file", kek,
        "--url", oracle.url,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    session = json.loads(opened.stdout)
    for approver in who[1:]:
        sent = shimmfa(
            "quorum", "approve", "--session", session["id"], "--tek", session["tek"],
            "--toc-file", deal, "--player", approver,
            "--identity", tmp_path / f"{approver.split('/')[1]}.key", "--url", oracle.url,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    return shimmfa(
        "quorum", "totp", "--session", session["id"], "--kek-file", kek, "--url", oracle.url
    )


def released_code(done: Any) -> str:
    assert done.returncode == 0, done.stderr
    code: str = done.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), done.stdout
    return code


def test_a_quorum_of_both_groups_opens_a_flagged_session_once(make_shim, tmp_path):
    with CentralServer(tmp_path / "central").running() as central:
        flagged_session_once(make_shim, tmp_path, central)


def flagged_session_once(make_shim, tmp_path: Path, central: CentralServer) -> None:
    rig = emergency_shim(make_shim, tmp_path, central)
    provisioned = provision(rig, tmp_path, rig.code(ADMIN))
    assert provisioned.returncode == 0, provisioned.stderr
    deal = json.loads((tmp_path / "deal.json").read_text())
    assert set(deal["tocs"]) == {f"{g}/{n}" for g, names in HOLDERS.items() for n in names}
    status = rig.cli("breakglass", "status", "--config", str(rig.config))
    assert status.returncode == 0 and "clinical: 2 of 3" in status.stdout
    assert "infosec: 1 of 2" in status.stdout
    rig.start()
    with OracleServer(
        tmp_path / "oracle", "--ephemeral", "--register", str(tmp_path / "deal.json")
    ).running() as oracle:
        code = released_code(
            release(oracle, tmp_path, ["clinical/ann", "infosec/ivan", "clinical/cat"])
        )

    rig.tech.send(f"breakglass {code}\r".encode())
    opened = rig.tech.read_until(b"Disconnect to end session.\r\n")
    match = SUCCESS.search(opened)
    assert match is not None, opened
    session_id = match[1].decode()
    assert EMERGENCY_NOTICE.encode() in opened
    rig.tech.send(b"status\r")
    rig.dev.read_until(b"status\r")

    def alerts() -> list[dict[str, Any]]:
        return [e for e in read_events(rig.siem) if e["kind"] == "breakglass_session"]

    raised = wait_for(lambda: len(alerts()) == 2 and alerts(), "two break-glass alerts", 10)
    assert {e["fields"]["audience"] for e in raised} == {"clinical_engineering", "infosec"}
    assert {e["fields"]["session_id"] for e in raised} == {session_id}
    assert all(e["severity"] <= 1 for e in raised)  # ALERT or worse

    def at_central() -> list[dict[str, Any]]:
        with central.client() as client:
            answer = client.get("/api/v1/events", params={"kind": "breakglass_session"})
        return list(answer.json()["items"]) if answer.status_code == 200 else []

    arrived = wait_for(
        lambda: len(at_central()) == 2 and at_central(), "both alerts at central", 15
    )
    assert {e["fields"]["audience"] for e in arrived} == {"clinical_engineering", "infosec"}

    rig.tech.hangup()
    recording = wait_for(
        lambda: next(
            (
                p
                for p in (rig.storage / "sessions").glob("*.shrec")
                if verify(p.read_bytes()).status == "valid"
            ),
            None,
        ),
        "the break-glass recording, closed",
        10,
    )
    header = verify(recording.read_bytes()).header
    assert header["break_glass"] is True and header["technician_id"] == "breakglass"

    rig.new_technician()
    rig.tech.read_until(b"<totp_code>\r\n> ")
    rig.tech.send(f"breakglass {code}\r".encode())  # the same code: a replay
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert "result=REPLAY" in rig.daemon.log_text()


def test_one_group_alone_cannot_make_a_working_code(make_shim, tmp_path):
    rig = emergency_shim(make_shim, tmp_path)
    assert provision(rig, tmp_path, rig.code(ADMIN)).returncode == 0
    rig.start()
    with OracleServer(
        tmp_path / "oracle", "--ephemeral", "--register", str(tmp_path / "deal.json")
    ).running() as oracle:
        refused = release(oracle, tmp_path, ["clinical/ann", "clinical/bob", "clinical/cat"])
    assert refused.returncode != 0 and "below_threshold" in refused.stderr
    # the clinical holders combine their Tocs themselves: a base32 text, but not the secret
    tocs = [
        load_toc(
            tmp_path / "deal.json", read_identity_file(tmp_path / f"{name}.key"), f"clinical/{name}"
        )
        for name in ("ann", "bob")
    ]
    piece = combine_tocs(tocs)
    code = totp_code(decode_secret(piece), int(time.time() // 30), 6, "SHA1")
    rig.tech.send(f"breakglass {code}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert rig.dev.received == b""


def test_provisioning_needs_an_admins_code_and_keeps_nothing_otherwise(make_shim, tmp_path):
    rig = emergency_shim(make_shim, tmp_path)
    refused = provision(rig, tmp_path, rig.wrong_code(ADMIN))
    assert refused.returncode != 0 and "refused" in refused.stderr
    assert not (tmp_path / "deal.json").exists()
    status = rig.cli("breakglass", "status", "--config", str(rig.config))
    assert status.returncode == 1 and "not provisioned" in status.stdout
    rig.start()
    rig.tech.send(b"breakglass 123456\r")
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert "result=BAD_USER" in rig.daemon.log_text()
