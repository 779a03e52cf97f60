"""The demo's central service: a real `shimmfa central serve` over HTTPS on
127.0.0.1 (a throwaway CA, `tls`), on a SQLite file in the demo's folder,
with a first admin and the demo shim registered, through the same commands
an operator runs (`central init`, `token create`, `shim add`, `keys show`),
and a vendor's technician enrolled through the API as the UI does.

Rules: every secret the demo makes (the admin's password and TOTP secret,
the API token, the shim's credential) is a file of mode 0600 in the demo's
folder; the only ones printed are what an operator types to log in.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from shimmfa.core.totp import decode_secret, generate_totp_secret, totp_code
from shimmfa.demo.tls import make_tls
from shimmfa.errors import DemoError

__all__ = ["ADMIN", "AUDITOR", "DemoCentral", "write_private"]

ADMIN = "admin@demo.example.org"
AUDITOR = "audrey@demo.example.org"  # plays sessions back in the UI (admins may not)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_private(path: Path, text: str) -> Path:
    """`text` and a newline in a new file of mode 0600 (a secret of the demo)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")
    return path


@dataclass
class DemoCentral:
    workdir: Path
    port: int = field(default_factory=_free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    admin_secret: str = field(default_factory=generate_totp_secret)
    admin_second: str = field(default_factory=generate_totp_secret)  # the admin's 2nd factor
    token: str = ""
    auditor: tuple[str, Path] | None = None  # AUDITOR's password and TOTP secret file
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'central.db'}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def log(self) -> Path:
        return self.workdir / "central.log"

    def admin_code(self, secret: str | None = None, *, ahead: int = 0) -> str:
        """The current code of the admin's first factor (or of `secret`);
        `ahead` steps later (within the window) for a code not used yet."""
        key = decode_secret(secret or self.admin_secret)
        return totp_code(key, int(time.time() // 30) + ahead, 6, "SHA1")

    def _env(self) -> dict[str, str]:
        """Central's keys and recordings in the demo's directory."""
        return {
            **os.environ,
            "SHIMMFA_CENTRAL_KEYS_DIR": str(self.workdir / "central-keys"),
            "SHIMMFA_CENTRAL_RECORDINGS_DIR": str(self.workdir / "central-recordings"),
        }

    def _central(self, *args: str) -> str:
        return self._run(*args, "--database-url", self.database_url)

    def _run(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "shimmfa", "central", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
            env=self._env(),
        )
        if done.returncode != 0:
            raise DemoError(f"shimmfa central {args[0]}: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> DemoCentral:
        """Initialise the database and the admin, then serve over HTTPS."""
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _, cert, key = make_tls(self.workdir / "tls")
        password = write_private(self.workdir / "admin.password", self.password)
        secret = write_private(self.workdir / "admin.totp", self.admin_secret)
        write_private(self.workdir / "admin.totp.second", self.admin_second)
        self._central(
            "init", "--admin", ADMIN, "--password-file", str(password),
            "--totp-secret-file", str(secret), "--code", self.admin_code(),
            "--factor-code", self.admin_code(self.admin_second),
        )  # fmt: skip
        self.token = self._central("token", "create", "--name", "demo", "--role", "admin").strip()
        write_private(self.workdir / "admin.token", self.token)
        self.auditor = self.add_operator(AUDITOR, "auditor")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "shimmfa",
                    "central",
                    "serve",
                    "--database-url",
                    self.database_url,
                    "--port",
                    str(self.port),
                    "--tls-cert",
                    str(cert),
                    "--tls-key",
                    str(key),
                    "--log-level",
                    "warning",
                ],  # fmt: skip
                stdin=subprocess.DEVNULL,
                env=self._env(),
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"the central service did not start (log: {self.log})")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return client.get("/openapi.json").status_code == 200
        except httpx.HTTPError:
            return False

    def register(
        self, shim_id: str, public_key: str, recipient: str, hardware_id: str, period: float
    ) -> Path:
        """Register the shim with its age recipient (bundles are encrypted to
        it); the file (0600) holding its credential."""
        credential = self.workdir / f"{shim_id}.token"
        self._central(
            "shim", "add", shim_id, "--public-key", public_key, "--hardware-id", hardware_id,
            "--location", "demo bench", "--period", str(period), "--age-recipient", recipient,
            "--credential-file", str(credential),
        )  # fmt: skip
        return credential

    def keys(self) -> tuple[str, str]:
        """Central's bundle signing key and recording recipient, as
        `shimmfa central keys show` prints them (what a shim's config pins)."""
        shown = dict(
            line.split(": ", 1) for line in self._run("keys", "show").splitlines() if ": " in line
        )
        return shown["signing key (Ed25519)"].strip(), shown["recording recipient"].strip()

    def enrol_technician(self, technician_id: str, shim_id: str) -> str:
        """Through central's API, as an operator does in the UI: enrol,
        confirm the first code, assign to the shim; the TOTP secret."""
        body = {"technician_id": technician_id, "name": "Vic Vendor", "company": "ExampleMed"}
        with self.client() as client:
            made = client.post("/api/v1/technicians", json=body)
            if made.status_code != 201:
                raise DemoError(f"enrolling {technician_id}: HTTP {made.status_code} {made.text}")
            uri = str(made.json()["otpauth_uri"])
            secret = parse_qs(urlparse(uri).query)["secret"][0]
            code = self.admin_code(secret)
            steps = [
                (f"/api/v1/technicians/{technician_id}/confirm", {"code": code}),
                (f"/api/v1/technicians/{technician_id}/assignments", {"shim_id": shim_id}),
            ]
            for path, payload in steps:
                answer = client.post(path, json=payload)
                if answer.status_code not in (200, 201):
                    raise DemoError(f"POST {path}: HTTP {answer.status_code} {answer.text[:200]}")
        return secret

    def post(self, path: str) -> None:
        with self.client() as client:
            answer = client.post(path)
        if answer.status_code not in (200, 201):
            raise DemoError(f"central POST {path}: HTTP {answer.status_code} {answer.text[:200]}")

    def add_operator(self, operator_id: str, role: str) -> tuple[str, Path]:
        """An operator who logs in to the UI (`central operator add`): the
        password, and the file (0600) holding the TOTP secret."""
        password = secrets.token_urlsafe(12)
        password_file = write_private(self.workdir / f"{role}.password", password)
        secret_file = write_private(self.workdir / f"{role}.totp", generate_totp_secret())
        code = self.admin_code(secret_file.read_text().strip())
        self._central(
            "operator", "add", operator_id, "--role", role, "--password-file",
            str(password_file), "--totp-secret-file", str(secret_file), "--code", code,
        )  # fmt: skip
        return password, secret_file

    def create_token(self, name: str, role: str) -> str:
        """An API token (`shimmfa central token create`), printed once."""
        return self._central("token", "create", "--name", name, "--role", role).strip()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> tuple[int, Any]:
        """`method path` as the admin (or with `token`): status and JSON."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        with self.client() as client:
            answer = client.request(method, path, json=body, headers=headers)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    def auditor_get(self, path: str) -> str:
        """GET as an auditor (playback is for auditors and infosec only)."""
        token = self.create_token("demo-auditor", "auditor")
        with self.client() as client:
            answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
        if answer.status_code != 200:
            raise DemoError(f"central GET {path}: HTTP {answer.status_code} {answer.text[:200]}")
        return answer.text

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10.0,
        )

    def get(self, path: str) -> Any:
        with self.client() as client:
            answer = client.get(path)
        if answer.status_code != 200:
            raise DemoError(f"central GET {path}: HTTP {answer.status_code} {answer.text[:200]}")
        return answer.json()

    def login_admin(self) -> str:
        """Log the admin in through the API as a browser would (password and
        code, then the second factor); the role of the session."""
        with httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            timeout=10.0,
        ) as client:
            # `init` used this time step's codes: the next step's are fresh (window 1)
            code = self.admin_code(ahead=1)
            body = {"operator_id": ADMIN, "password": self.password, "code": code}
            first = client.post("/api/v1/login", json=body)
            if first.status_code != 202:
                raise DemoError(f"admin login: HTTP {first.status_code}, not 202 (second factor)")
            token = first.json()["login_token"]
            code = self.admin_code(self.admin_second, ahead=1)
            done = client.post("/api/v1/login/factor", json={"login_token": token, "code": code})
            if done.status_code != 200:
                raise DemoError(f"admin's second factor: HTTP {done.status_code} {done.text[:200]}")
            me = client.get("/api/v1/me").json()
        return str(me["role"])

    def wait_status(self, shim_id: str, wanted: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            row: dict[str, Any] = self.get(f"/api/v1/shims/{shim_id}")
            if row["status"] == wanted:
                return row
            if time.monotonic() > deadline:
                raise DemoError(f"central shows {shim_id} {row['status']}, not {wanted}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
