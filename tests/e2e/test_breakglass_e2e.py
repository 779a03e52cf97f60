"""Break-glass end to end (issue 16 item 5): `shimmfa breakglass provision`
deals the shim's emergency secret as 2 of clinical engineering AND 1 of
information security and registers the deal with the real central
service; a clinical engineer requests the code there, holders of both
departments approve with `shimmfa quorum approve` at the oracle mounted in
central, and the code comes once, to her; `breakglass <code>` at the real daemon's
PTY opens a session flagged break-glass (the notice on the port, the
recording's header, `session_start`) and raises two alerts, one per
audience, at once, to the SIEM and to central; the same code never passes
again; the review at central closes with both departments' sign-offs; a
group alone cannot make a working code; provisioning needs an admin's
code."""

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


def tokens_at(central: CentralServer, tmp_path: Path) -> dict[str, Path]:
    """An API token file for each approving holder (named as in the deal)
    and for rita, the clinical engineer who requests the code."""
    people = {"ann": "clinical_engineering", "cat": "clinical_engineering",
              "ivan": "infosec", "rita": "clinical_engineering"}  # fmt: skip
    files = {}
    for name, role in people.items():
        token = central.shimmfa("token", "create", "--name", name, "--role", role).strip()
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(token + "\n")
        files[name].chmod(0o600)
    return files


def released_by_central(central: CentralServer, tmp_path: Path) -> str:
    """Rita asks central for the code; ann and cat (clinical) and ivan
    (infosec) approve with `shimmfa quorum approve` against the oracle
    mounted at /quorum; the code comes once, to rita."""
    tokens = tokens_at(central, tmp_path)
    with central.client(tokens["rita"].read_text().strip()) as rita:
        opened = rita.post(
            "/api/v1/breakglass/requests",
            json={"shim_id": SHIM, "reason": "infusion pump occluded, vendor on site"},
        )
        assert opened.status_code == 201, opened.text
        request, kek = opened.json()["request"], opened.json()["kek"]
        for holder in ("clinical/ann", "infosec/ivan", "clinical/cat"):
            name = holder.split("/")[1]
            sent = shimmfa(
                "quorum", "approve", "--url", f"{central.base_url}/quorum",
                "--session", request["session_id"], "--tek", request["tek"],
                "--toc-file", tmp_path / "deal.json", "--player", holder,
                "--identity", tmp_path / f"{name}.key", "--token-file", tokens[name],
                "--ca-file", central.ca_file,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
        path = f"/api/v1/breakglass/requests/{request['id']}/code"
        released = rita.post(path, json={"kek": kek})
        assert released.status_code == 200, released.text
        assert rita.post(path, json={"kek": kek}).status_code == 410  # once
    code: str = released.json()["totp"]
    return code


def flagged_session_once(make_shim, tmp_path: Path, central: CentralServer) -> None:
    rig = emergency_shim(make_shim, tmp_path, central)
    provisioned = provision(rig, tmp_path, rig.code(ADMIN))
    assert provisioned.returncode == 0, provisioned.stderr
    assert "central: deal registered" in provisioned.stdout
    deal = json.loads((tmp_path / "deal.json").read_text())
    assert set(deal["tocs"]) == {f"{g}/{n}" for g, names in HOLDERS.items() for n in names}
    status = rig.cli("breakglass", "status", "--config", str(rig.config))
    assert status.returncode == 0 and "clinical: 2 of 3" in status.stdout
    assert "infosec: 1 of 2" in status.stdout
    with central.client() as admin:
        registered = admin.get(f"/api/v1/shims/{SHIM}/breakglass").json()["current"]
    assert {label: g["group_id"] for label, g in registered["groups"].items()} == {
        label: g["group_id"] for label, g in deal["groups"].items()
    }
    assert set(registered["groups"]["clinical"]["holders"]) == set(HOLDERS["clinical"])
    assert "tocs" not in json.dumps(registered)
    again = rig.cli("breakglass", "register", "--config", str(rig.config))
    assert again.returncode == 0 and "already registered" in again.stdout, again.stderr
    rig.start()
    code = released_by_central(central, tmp_path)

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
    signed_off_by_both(central, tmp_path, session_id)

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


def signed_off_by_both(central: CentralServer, tmp_path: Path, session_id: str) -> None:
    """The shim's alerts opened a review at central, due in 24 h; it closes
    when clinical engineering and information security have both signed."""

    def review() -> dict[str, Any] | None:
        with central.client() as admin:
            found = admin.get("/api/v1/breakglass/reviews", params={"shim_id": SHIM}).json()
        return next((r for r in found["reviews"] if r["session_id"] == session_id), None)

    opened = wait_for(review, "the break-glass review at central", 15)
    assert opened["state"] == "open"
    for name in ("ann", "ivan"):  # one of each department
        with central.client((tmp_path / f"{name}.token").read_text().strip()) as reviewer:
            answer = reviewer.post(
                f"/api/v1/breakglass/reviews/{opened['id']}/signoffs",
                json={"comment": f"{name}: justified, pump serviced"},
            )
            assert answer.status_code == 201, answer.text
    closed = review()
    assert closed is not None and closed["state"] == "closed"
    assert closed["signoffs"]["clinical_engineering"]["by"] == "token:ann"
    assert closed["signoffs"]["infosec"]["by"] == "token:ivan"


def test_one_group_alone_cannot_make_a_working_code(make_shim, tmp_path):
    rig = emergency_shim(make_shim, tmp_path)
    token = tmp_path / "central.token"  # a central that is down: provisioning still works
    token.write_text("sms_unused\n")
    token.chmod(0o600)
    rig.settings["central"] = {"url": "https://127.0.0.1:9", "token_file": str(token)}
    rig.config.write_text(yaml.safe_dump(rig.settings, sort_keys=False), encoding="utf-8")
    done = provision(rig, tmp_path, rig.code(ADMIN))
    assert done.returncode == 0, done.stderr
    assert "not registered with central yet" in done.stderr
    assert "sms_unused" not in done.stderr + done.stdout
    later = rig.cli("breakglass", "register", "--config", str(rig.config))
    assert later.returncode == 1 and "cannot be reached" in later.stderr
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
    (tmp_path / "one").mkdir()
    one_group = rig.cli(
        "breakglass", "provision", "--config", str(rig.config), "--operator", ADMIN,
        "--code", rig.code(ADMIN), "--group", "clinical:2", *holders(tmp_path / "one"),
        "-o", str(tmp_path / "deal.json"),
    )  # fmt: skip
    assert one_group.returncode != 0 and "exactly two groups" in one_group.stderr
    assert not (tmp_path / "deal.json").exists()
    status = rig.cli("breakglass", "status", "--config", str(rig.config))
    assert status.returncode == 1 and "not provisioned" in status.stdout
    rig.start()
    rig.tech.send(b"breakglass 123456\r")
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    assert "result=BAD_USER" in rig.daemon.log_text()
