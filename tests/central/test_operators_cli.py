"""`shimmfa central operator add|list`: an operator of any role exists only
once their authenticator is confirmed by a code (a wrong one leaves
nothing), then logs in with password and code; the secret never shows on
the terminal when it goes to a file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from central.kit import code_at
from shimmfa.central.app import create_app
from shimmfa.central.settings import CentralSettings

SHIMMFA = Path(sys.executable).with_name("shimmfa")
PASSWORD = "an auditor's long password"  # noqa: S105 - a test's


def central_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [str(SHIMMFA), "central", *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_an_auditor_exists_only_after_a_right_code_and_then_logs_in(
    sqlite_url: str, tmp_path: Path
) -> None:
    assert central_cli(sqlite_url, "init").returncode == 0
    password, secret_file = tmp_path / "password", tmp_path / "audrey.totp"
    password.write_text(PASSWORD + "\n")
    add = ("operator", "add", "audrey@example.org", "--role", "auditor",
           "--password-file", str(password), "--totp-secret-file", str(secret_file))  # fmt: skip

    wrong = central_cli(sqlite_url, *add, "--code", "000000")
    assert wrong.returncode == 1 and "was not created" in wrong.stderr
    assert "audrey" not in central_cli(sqlite_url, "operator", "list").stdout
    secret = secret_file.read_text().strip()
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"

    right = central_cli(sqlite_url, *add, "--code", code_at(secret, time.time()))
    assert right.returncode == 0, right.stderr
    assert secret not in right.stdout + right.stderr
    listed = central_cli(sqlite_url, "operator", "list").stdout
    assert "audrey@example.org" in listed and "auditor" in listed
    again = central_cli(sqlite_url, *add, "--code", code_at(secret, time.time()))
    assert again.returncode == 1 and "exists already" in again.stderr

    app = create_app(CentralSettings(database_url=sqlite_url), monitor=False)
    with TestClient(app) as client:
        login = {"operator_id": "audrey@example.org", "password": PASSWORD,
                 "code": code_at(secret, time.time() + 30)}  # fmt: skip
        answer = client.post("/api/v1/login", json=login)
        assert answer.status_code == 200, answer.text
        assert client.get("/api/v1/me").json()["role"] == "auditor"


def test_an_unknown_role_is_refused_before_anything_is_made(
    sqlite_url: str, tmp_path: Path
) -> None:
    assert central_cli(sqlite_url, "init").returncode == 0
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    refused = central_cli(
        sqlite_url, "operator", "add", "pat", "--role", "pilot", "--password-file",
        str(password), "--totp-secret-file", str(tmp_path / "pat.totp"), "--code", "000000",
    )  # fmt: skip
    assert refused.returncode == 1 and "role must be one of" in refused.stderr
    assert "pat" not in central_cli(sqlite_url, "operator", "list").stdout
