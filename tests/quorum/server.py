"""A real `shimmfa quorum serve` (uvicorn) on 127.0.0.1 in a subprocess,
for the tests that talk HTTP to the oracle as farMFA clients do.

    with OracleServer(tmp_path, "--ephemeral").running() as oracle:
        oracle.client().post("/sessions", json=...)

`tls=True` serves HTTPS with a throwaway CA (`ca_file`). Readiness is
awaited with a deadline (the OpenAPI document answers), never a sleep."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from central.postgres import free_port
from processes import log_tail, stop_group
from shimmfa.demo.tls import make_tls
from waiting import wait_for

SHIMMFA = Path(sys.executable).with_name("shimmfa")


class OracleServer:
    def __init__(self, workdir: Path, *args: str, tls: bool = False) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ca_file: Path | None = None
        self._log = workdir / f"oracle-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> OracleServer:
        self.launch()
        return self.await_ready(timeout)

    def launch(self) -> None:
        """Start the process; `await_ready` waits for it (launch several
        servers first, then wait for each: they start in parallel)."""
        command = [str(SHIMMFA), "quorum", "serve", "--port", str(self.port), *self.args]
        if self.tls:
            self.ca_file, cert, key = make_tls(self.workdir / "tls")
            command += ["--tls-cert", str(cert), "--tls-key", str(key)]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                start_new_session=True,
            )  # fmt: skip

    def await_ready(self, timeout: float = 30.0) -> OracleServer:
        try:
            wait_for(self._ready, f"the oracle on {self.url}", timeout, detail=self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"shimmfa quorum serve exited: {self.log()}")
        try:
            with self.client() as client:
                return client.get("/openapi.json").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_group(process)

    @contextmanager
    def running(self) -> Iterator[OracleServer]:
        with all_running(self):
            yield self

    def log(self) -> str:
        return log_tail(self._log)

    def client(self) -> httpx.Client:
        verify: ssl.SSLContext | bool = False
        if self.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=self.url, verify=verify, timeout=10.0)


@contextmanager
def all_running(*servers: OracleServer) -> Iterator[None]:
    """Start `servers` together, stop them all at the end."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.await_ready()
        yield
    finally:
        for server in servers:
            server.stop()
