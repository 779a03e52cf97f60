"""Central ingest under load: simulated shims, each with its own Ed25519
key, registered through the API, post signed heartbeats over keep-alive
connections (httpx, several client processes) to a real `shimmfa central
serve --workers 2` on a throwaway PostgreSQL (durable settings: fsync on).

Measured in one run, with the same clients and connections:
- heartbeats: `POST /api/v1/heartbeats`, closed loop (each connection sends
  its next heartbeat when the last is answered): sustained heartbeats/s,
  p50 and p99 latency. Every body is signed before the load starts (a
  connection that uses up its own signs more as it goes, counted in
  `made_during_load`);
- the floor: `GET /api/v1/ping`, an empty request authenticated as a shim
  (FastAPI's routing, TLS-less HTTP, auth; no signature, no database), the
  same way. The heartbeat is served before the routing
  (`central/api/heartbeat_path.py`), so it may come closer to the floor
  than a route could;
- the ratio heartbeats/s / floor/s;
- missing detection: one more shim (period 2 s) sends one heartbeat before
  the load and then nothing; the time from that heartbeat until central
  shows it `missing`, while the load runs (must be <= 3 periods + 5 s).

Targets: >= 1,700 heartbeats/s (100,000 shims at a 60 s period), p99 <= 50 ms.
Run: `PYTHONPATH=tests python benchmarks/central_ingest.py [--quick] [--json F]`
(`tests/` holds the PostgreSQL and server fixtures it shares with the tests).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.kit import SimShim
from central.postgres import PostgresServer
from central.server import CentralServer

TARGET_RATE = 1700.0
TARGET_P99_MS = 50.0
SILENT_PERIOD = 2.0


BODIES_PER_SECOND = 250  # signed ahead per connection: more than one sends under load


class _Connection:
    """A keep-alive HTTP/1.1 connection that sends each prepared request in
    one write and reads its answer by Content-Length (central always sends
    one). Cheaper per request than http.client or httpx, so the load
    generator, on the same two cores, leaves the CPU to the server."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> int:
        """Send `request`; the answer's status."""
        self.sock.sendall(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head, rest = self.buffer[:end], self.buffer[end + 4 :]
        lines = head.split(b"\r\n")
        lengths = [
            int(line.split(b":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith(b"content-length:")
        ]
        if not lengths:
            raise RuntimeError(f"an answer without Content-Length: {lines[0]!r}")
        self.buffer = rest
        while len(self.buffer) < lengths[0]:
            self._fill()
        self.buffer = self.buffer[lengths[0] :]
        return int(lines[0].split()[1])

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _request(host: str, path: str, credential: str, body: bytes) -> bytes:
    """A whole HTTP/1.1 request: a POST of `body`, or a GET without one."""
    lines = [
        f"{'POST' if body else 'GET'} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {credential}",
    ]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _client(
    base_url: str,
    shims: list[tuple[str, bytes, str]],
    connections: int,
    duration: float,
    path: str,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """One client process: `connections` threads, each with its own
    keep-alive connection and its own shims. Every body is signed before the
    process reports `ready`; all start when the parent says `go`, so the
    signing never competes with the measured load."""
    per_thread = [shims[i::connections] for i in range(connections)]
    latencies: list[float] = []
    errors = 0
    late = 0  # requests made during the load, when a connection used up its own
    lock = threading.Lock()
    prepared = threading.Barrier(len([m for m in per_thread if m]) + 1)

    def run(mine: list[tuple[str, bytes, str]]) -> None:
        nonlocal errors, late
        sims = []
        for shim_id, raw, credential in mine:
            sim = SimShim(shim_id, key=Ed25519PrivateKey.from_private_bytes(raw))
            sim.credential = credential
            sims.append(sim)
        rounds = int(duration * BODIES_PER_SECOND / len(sims)) + 2
        heartbeats = path == "/api/v1/heartbeats"
        where = urlsplit(base_url)

        def request(sim: SimShim) -> bytes:
            body = json.dumps(sim.heartbeat()).encode() if heartbeats else b""
            return _request(where.netloc, path, sim.credential, body)

        ahead = [request(sim) for _ in range(rounds) for sim in sims]

        def requests() -> Any:
            nonlocal late
            yield from ahead
            while True:
                for sim in sims:
                    late += 1
                    yield request(sim)

        local: list[float] = []
        failed = 0
        connection = _Connection(where.hostname or "", where.port or 80)
        prepared.wait()
        go.wait()
        end = time.monotonic() + duration
        try:
            for data in requests():
                began = time.perf_counter()
                status = connection.exchange(data)
                local.append(time.perf_counter() - began)
                failed += status != 200
                if time.monotonic() >= end:
                    break
        finally:
            connection.close()
        with lock:
            latencies.extend(local)
            errors += failed

    threads = [threading.Thread(target=run, args=(mine,)) for mine in per_thread if mine]
    for thread in threads:
        thread.start()
    prepared.wait()
    ready.put(True)
    for thread in threads:
        thread.join()
    results.put((latencies, errors, late))


def load(
    base_url: str,
    shims: list[tuple[str, bytes, str]],
    *,
    processes: int,
    connections: int,
    duration: float,
    path: str,
) -> dict[str, float]:
    ctx = mp.get_context("fork")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(
            target=_client,
            args=(base_url, shims[i::processes], connections, duration, path, ready, go, results),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=300)
    go.set()
    latencies: list[float] = []
    errors = late = 0
    for _ in workers:
        got, failed, signed_late = results.get(timeout=duration + 120)
        latencies += got
        errors += failed
        late += signed_late
    for worker in workers:
        worker.join()
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "errors": errors,
        "made_during_load": late,
        "rate": count / duration,
        "p50_ms": 1000 * statistics.median(latencies) if count else 0.0,
        "p99_ms": 1000 * latencies[min(count - 1, int(count * 0.99))] if count else 0.0,
    }


def register(server: CentralServer, count: int) -> list[tuple[str, bytes, str]]:
    from cryptography.hazmat.primitives import serialization

    shims = []
    with server.client() as client:
        for n in range(count):
            sim = SimShim(f"bench-{n:06d}")
            answer = client.post("/api/v1/shims", json=sim.registration(period=60.0))
            answer.raise_for_status()
            raw = sim.key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            shims.append((sim.shim_id, raw, answer.json()["credential"]))
    return shims


def watch_missing(server: CentralServer, found: dict[str, float]) -> threading.Thread:
    """Register a shim with a 2 s period, send it one heartbeat, and time
    how long until central shows it missing (in a thread, during the load)."""
    sim = SimShim("bench-silent")
    sim.credential = server.register_shim("bench-silent", sim.public_key, period=SILENT_PERIOD)
    with server.client(sim.credential) as client:
        client.post("/api/v1/heartbeats", json=sim.heartbeat()).raise_for_status()
    sent = time.monotonic()

    def poll() -> None:
        with server.client() as client:
            while time.monotonic() - sent < 3 * SILENT_PERIOD + 30:
                status = client.get("/api/v1/shims/bench-silent").json()["status"]
                if status == "missing":
                    found["missing_after_s"] = time.monotonic() - sent
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (the test suite's)")
    parser.add_argument("--shims", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--processes", type=int, default=3, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per process")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off")
    args = parser.parse_args()
    if args.quick:
        args.shims, args.duration, args.processes, args.connections = 50, 3.0, 1, 4
    pg = PostgresServer(durable=not args.no_fsync).start()
    report: dict[str, Any] = {}
    try:
        workdir = Path(tempfile.mkdtemp(prefix="central-bench-"))
        server = CentralServer(
            workdir,
            database_url=pg.url(),
            workers=2,
            tls=False,
            settings={"monitor_interval": "0.5", "pool_size": "20"},
        )
        with server.running():
            shims = register(server, args.shims)
            found: dict[str, float] = {}
            watcher = watch_missing(server, found)
            shape = {
                "processes": args.processes,
                "connections": args.connections,
                "duration": args.duration,
            }
            beats = load(server.base_url, shims, path="/api/v1/heartbeats", **shape)
            floor = load(server.base_url, shims, path="/api/v1/ping", **shape)
            watcher.join(timeout=3 * SILENT_PERIOD + 30)
        report = {
            "heartbeats": beats,
            "floor": floor,
            "ratio": beats["rate"] / floor["rate"] if floor["rate"] else 0.0,
            "missing_after_s": found.get("missing_after_s"),
            "missing_limit_s": 3 * SILENT_PERIOD + 5,
            "shims": args.shims,
            **{k: v for k, v in vars(args).items() if k != "json"},
        }
    finally:
        pg.stop()
    missing = report["missing_after_s"]
    ok = (
        report["heartbeats"]["rate"] >= TARGET_RATE
        and report["heartbeats"]["p99_ms"] <= TARGET_P99_MS
        and report["heartbeats"]["errors"] == 0
        and missing is not None
        and missing <= report["missing_limit_s"]
    )
    report["meets_targets"] = ok
    rows = [
        ("", "requests/s", "p50 ms", "p99 ms", "errors"),
        ("heartbeats", *_row(report["heartbeats"])),
        ("floor (ping)", *_row(report["floor"])),
    ]
    for row in rows:
        print(f"{row[0]:<14}" + "".join(f"{cell:>12}" for cell in row[1:]))
    print(f"ratio heartbeats/floor: {report['ratio']:.2f}")
    shown = "never" if missing is None else f"{missing:.2f} s"
    print(
        f"silent shim (period {SILENT_PERIOD:g} s) missing after {shown} "
        f"(limit {report['missing_limit_s']:g} s)"
    )
    print(
        f"targets (>= {TARGET_RATE:.0f}/s, p99 <= {TARGET_P99_MS:.0f} ms): "
        f"{'met' if ok else 'NOT met'}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _row(figures: dict[str, float]) -> tuple[str, ...]:
    return (
        f"{figures['rate']:.0f}",
        f"{figures['p50_ms']:.1f}",
        f"{figures['p99_ms']:.1f}",
        f"{figures['errors']:.0f}",
    )


if __name__ == "__main__":
    sys.exit(main())
