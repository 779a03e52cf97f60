"""A real `shimmfa central serve` over TLS on 127.0.0.1, for tests that need
the whole service (the end-to-end test with the real shim daemon, the
two-worker test, outages).

    with CentralServer(tmp_path).running() as central:   # SQLite in tmp_path
        credential = central.register_shim("shim-1", "ed25519:...", period=1.0)
        central.client().get("/api/v1/shims/shim-1").json()["status"]
        central.stop(); ...; central.start()          # an outage, same port

`CentralServer(tmp_path, database_url=pg.url("db"), workers=2)` runs it on
PostgreSQL (`central.postgres.PostgresServer` makes one). What it gives:
`base_url` (https://127.0.0.1:PORT), `ca_file` (the throwaway CA that
signed the server's certificate, for the shim's `central.ca_file`),
`admin_token` (an admin API token), `admin_id`/`admin_password`/
`admin_secret` (the first admin operator), `register_shim(...)` (returns
the shim's credential; `credential_file=` writes it 0600 for the shim's
`central.token_file`), `client()` (an httpx client trusting the CA, with
the admin token), `start()`, `stop()`, `restart()`, `log()`.

`settings` adds `SHIMMFA_CENTRAL_*` settings (e.g. {"monitor_interval":
"0.2"}); the monitor runs every 0.2 s by default here so short heartbeat
periods are judged promptly."""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from central.kit import code_at
from central.postgres import free_port
from processes import log_tail, stop_group
from shimmfa.core.totp import generate_totp_secret
from shimmfa.demo.tls import make_tls
from waiting import wait_for

__all__ = ["CentralServer", "make_tls"]  # make_tls: the demo's, re-exported

SHIMMFA = Path(sys.executable).with_name("shimmfa")


class CentralServer:
    """`shimmfa central serve` in a subprocess; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        workers: int = 1,
        settings: dict[str, str] | None = None,
        tls: bool = True,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{workdir / 'central.db'}"
        self.workers = workers
        self.settings = {"monitor_interval": "0.2", **(settings or {})}
        self.tls = tls
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.ca_file, self.cert_file, self.key_file = make_tls(workdir / "tls")
        self.admin_id = "admin"
        self.admin_password = "central-test-password"  # noqa: S105 - throwaway
        self.admin_secret = generate_totp_secret()
        self.admin_second = generate_totp_secret()  # the admin's second factor
        self.admin_token = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "central.log"
        self._initialised = False

    # -- setting up ------------------------------------------------------------------

    def shimmfa(self, *args: str) -> str:
        """Run `shimmfa central ARGS` on this server's database; its stdout."""
        done = subprocess.run(
            [str(SHIMMFA), "central", *args, "--database-url", self.database_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.workdir,
            env=self._env(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"shimmfa central {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def _init(self) -> None:
        """`central init` and an admin token; on the default SQLite database
        a copy of the first server's initialised files (the same schema,
        admin and keys: `init` costs seconds, a copy nothing)."""
        template = _TEMPLATES.get(self._template_key)
        if template is not None:
            template.copy_to(self)
            self._initialised = True
            return
        self._init_fresh()
        if self._template_key is not None:
            _TEMPLATES[self._template_key] = _Template(self)

    @property
    def _template_key(self) -> tuple[tuple[str, str], ...] | None:
        if self.database_url != f"sqlite:///{self.workdir / 'central.db'}":
            return None
        return tuple(sorted(self.settings.items()))

    def _init_fresh(self) -> None:
        password = self.workdir / "admin.password"
        password.write_text(self.admin_password)
        secret = self.workdir / "admin.totp"
        secret.write_text(self.admin_secret)
        secret.chmod(0o600)
        second = self.workdir / "admin.totp.second"
        second.write_text(self.admin_second)
        second.chmod(0o600)
        now = time.time()
        self.shimmfa(
            "init", "--admin", self.admin_id, "--password-file", str(password),
            "--totp-secret-file", str(secret), "--code", code_at(self.admin_secret, now),
            "--factor-code", code_at(self.admin_second, now),
        )  # fmt: skip
        self.admin_token = self.shimmfa(
            "token", "create", "--name", "test-admin", "--role", "admin"
        ).strip()
        self._initialised = True

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIMMFA_CENTRAL_")}
        env.update({f"SHIMMFA_CENTRAL_{k.upper()}": v for k, v in self.settings.items()})
        return env

    # -- running -----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> CentralServer:
        if not self._initialised:
            self._init()
        command = [
            str(SHIMMFA), "central", "serve", "--database-url", self.database_url,
            "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning",
        ]  # fmt: skip
        if self.tls:
            command += ["--tls-cert", str(self.cert_file), "--tls-key", str(self.key_file)]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=True,
            )
        try:
            wait_for(self._ready, f"central on {self.base_url}", timeout, detail=self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"shimmfa central serve exited: {self.log()}")
        try:
            with self.client() as client:
                return client.get("/api/v1/me").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_group(process)

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def running(self) -> Iterator[CentralServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def log(self) -> str:
        return log_tail(self._log)

    # -- using it ----------------------------------------------------------------------

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            verify=ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else False,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=10.0,
        )

    def register_shim(
        self,
        shim_id: str,
        public_key: str,
        *,
        hardware_id: str = "hw-1",
        period: float = 60.0,
        location: str = "test bench",
        credential_file: Path | None = None,
    ) -> str:
        """Register through the API; the shim's credential (also written to
        `credential_file`, mode 0600, if given)."""
        with self.client() as client:
            answer = client.post(
                "/api/v1/shims",
                json={
                    "shim_id": shim_id,
                    "hardware_id": hardware_id,
                    "public_key": public_key,
                    "location": location,
                    "heartbeat_period": period,
                },
            )
        if answer.status_code != 201:
            raise RuntimeError(f"registering {shim_id}: {answer.status_code} {answer.text}")
        credential: str = answer.json()["credential"]
        if credential_file is not None:
            fd = os.open(credential_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(credential + "\n")
        return credential


class _Template:
    """An initialised SQLite central (database, keys, admin), copied into
    each later server's working directory with the same settings."""

    FILES = ("central.db", "admin.password", "admin.totp", "admin.totp.second")

    def __init__(self, source: CentralServer) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="central-template-"))
        atexit.register(shutil.rmtree, self.root, True)
        for name in self.FILES:
            shutil.copy2(source.workdir / name, self.root / name)
        shutil.copytree(source.workdir / KEYS, self.root / KEYS)
        self.secrets = (source.admin_secret, source.admin_second, source.admin_token)

    def copy_to(self, server: CentralServer) -> None:
        for name in self.FILES:
            shutil.copy2(self.root / name, server.workdir / name)
        shutil.copytree(self.root / KEYS, server.workdir / KEYS)
        server.admin_secret, server.admin_second, server.admin_token = self.secrets


KEYS = "central-keys"  # `central init`'s default, in the server's working directory
_TEMPLATES: dict[tuple[tuple[str, str], ...], _Template] = {}
