"""Relay latency and throughput: the authenticated shim against socat.

Topology, the same for every configuration:

    client -> tech PTY master | tech slave <-[relay]-> dev slave | dev PTY master <- peer

    floor  no relay: the peer sits on the tech slave itself (one PTY pair)
    socat  `socat -b BLOCK FILE:<tech slave>,raw,echo=0 FILE:<dev slave>,raw,echo=0`
    shim   the real daemon (`python -m shimmfa run`), authenticated with a
           valid TOTP code before anything is measured

All three run side by side for the whole benchmark. Each round measures:

- round-trip latency of 1-byte pings against an echo peer (`socat FD:n
  PIPE` on the peer fd, the same program for all three). One pinger
  process takes turns between the three clients, 100 pings at a time, so
  machine noise (other jobs, CPU idle states) hits all of them alike;
- bulk throughput technician->device and device->technician, measured
  separately, for each configuration in an order that rotates per round,
  by a source and a sink process of their own (`pty_peers.py`), so nobody
  shares a GIL. The sink checks the byte count, and in the first round the
  CRC-32 of the data; bytes left over after a transfer are an error.

The table shows medians over rounds, and each ratio is the median of the
per-round ratios. The default is 9 rounds because one round's bulk ratio
varies by +-0.1 on a small virtual machine (the host's load moves socat by
as much as the shim): a median of 3 rounds cannot tell 0.78 from 0.83, one
of 9 can to about +-0.03. Last, the auth decision time with the durable
SQLite commit (`auth_bench.py`).

    python benchmarks/relay_bench.py [--quick] [--json FILE] [--check]
        [--siem-endpoint URL | --hung-siem] [--heartbeat-period S]

`--siem-endpoint tcp://host:port` (or tls://) points the shim's SIEM
(`siem.transport: syslog`) there; `--hung-siem` starts a receiver here that
accepts the connection and never reads, so the shim's sender is stuck for
the whole run; `--heartbeat-period` makes the shim queue an event that
often. The ratios then show whether a stuck SIEM slows the relay.

`--check` exits 1 when an acceptance ratio fails. Every process, PTY and
temporary directory it makes is removed on exit, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from auth_bench import measure_auth, percentile
from pty_peers import expected_crc, raw_pty_pair
from shimmfa.core.gate import BANNER
from shimmfa.core.totp import decode_secret, generate_totp_secret, totp_code

HERE = Path(__file__).resolve().parent
PEERS = HERE / "pty_peers.py"
MIB = 1 << 20
SOCAT_BLOCK = 65536  # socat -b; a tty read returns at most 4 KiB to socat and shim alike
TECHNICIAN = "bench@example.org"
OPENED = b"Pass-through enabled. Disconnect to end session.\r\n"
STEP_TIMEOUT = 120.0
LIMITS = {"p50": 1.2, "p99": 2.0, "t2d": 0.8, "d2t": 0.8, "auth_p99_ms": 5.0}

SHIM_CONFIG = """\
shim:
  id: "bench-shim"
serial:
  technician_side_path: "{tech}"
  device_side_path: "{dev}"
  baudrate: 115200
storage:
  root: "{root}"
session:
  idle_timeout: 86400
recording:
  max_bytes: {max_bytes}
technicians:
  - technician_id: "{technician}"
    totp_secret: "{secret}"
"""


class BenchError(Exception):
    """The benchmark could not measure what it set out to."""


class HungReceiver:
    """A TCP listener on 127.0.0.1 that accepts and never reads (a SIEM that
    hangs); its small receive buffer makes the sender stall at once."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def unread(self) -> int:
        """Bytes the shim got into the accepted connections (never read)."""
        total = 0
        for connection in list(self.accepted):
            raw = fcntl.ioctl(connection.fileno(), termios.FIONREAD, b"\0\0\0\0")
            total += struct.unpack("i", raw)[0]
        return total

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


def session_bytes(plan: Plan) -> int:
    """A size limit the bench's one session never reaches: every round's
    bulk both ways, pings and the auth probes, twice over. The default
    (1 GiB) would end it with `size_limit` from the eighth round on."""
    return 2 * (2 * plan.rounds * plan.nbytes + (64 << 20))


def _shim_extra_config(plan: Plan) -> str:
    """The siem and tamper sections a plan asks for (YAML, appended)."""
    extra = ""
    if plan.siem_endpoint:
        extra += f'siem:\n  transport: syslog\n  endpoint: "{plan.siem_endpoint}"\n'
    if plan.heartbeat_period:
        extra += f"tamper:\n  heartbeat_period: {plan.heartbeat_period}\n"
    return extra


@dataclass
class Plan:
    rounds: int
    pings: int
    warmup: int
    ping_block: int
    nbytes: int
    block: int
    auth_count: int
    siem_endpoint: str | None = None  # syslog tcp:// or tls:// for the shim's events
    heartbeat_period: float | None = None


@dataclass
class Topology:
    """The two ends a measurement uses: the client's and the peer's fd."""

    name: str
    client: int
    peer: int
    relay: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class Workspace:
    """Owns every process, fd and directory of the run; `close` removes them."""

    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def spawn(
        self,
        args: list[str],
        *,
        fds: tuple[int, ...] = (),
        output: IO[bytes] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process; its stdout is a pipe unless `output` is given."""
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.PIPE,
            stderr=output if output is not None else subprocess.STDOUT,
            pass_fds=fds,
            env=env,
        )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        with contextlib.suppress(ValueError):
            self.processes.remove(process)
        return process.returncode

    def pty_pair(self, link: Path) -> int:
        """A PTY pair with its slave in raw mode behind `link`; the master fd."""
        master = raw_pty_pair(link)
        self.fds.append(master)
        return master

    def open_raw(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.fds.append(fd)
        tty.setraw(fd, termios.TCSANOW)
        return fd

    def close(self) -> None:
        for process in reversed(list(self.processes)):
            self.stop(process)
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        shutil.rmtree(self.root, ignore_errors=True)


# -- helpers -------------------------------------------------------------------


def _read_json(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The next JSON line a peer prints; raises if it dies or takes too long."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"{process.args!r} said nothing for {timeout:.0f} s")
    line = process.stdout.readline()
    try:
        parsed: dict[str, Any] = json.loads(line)
    except ValueError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        rest = process.stdout.read() if process.poll() is not None else b""
        raise BenchError(
            f"{process.args!r} failed: {(line + rest).decode(errors='replace')}"
        ) from None
    return parsed


def _drain(*fds: int) -> bytes:
    """Read and drop whatever is buffered on `fds`; what that was."""
    dropped = b""
    for fd in fds:
        os.set_blocking(fd, False)
    for _ in range(3):
        ready, _, _ = select.select(list(fds), [], [], 0.05)
        for fd in ready:
            with contextlib.suppress(BlockingIOError):
                dropped += os.read(fd, 1 << 16)
    return dropped


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    os.set_blocking(fd, False)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"timed out waiting for {marker!r}; got {seen[-200:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except BlockingIOError:
                pass
            except OSError:  # EIO until the other side opens its slave
                time.sleep(0.02)
    return seen


def _probe(src: int, dst: int) -> None:
    """A byte written at `src` must come out at `dst`: the path is up."""
    for _ in range(20):
        os.write(src, b"P")
        try:
            _read_until(dst, b"P", 0.5)
        except BenchError:
            continue
        _drain(src, dst)
        return
    raise BenchError("the relay does not pass bytes")


def _wait_opened(process: subprocess.Popen[bytes], paths: list[Path], timeout: float) -> None:
    """Wait until `process` has every path in `paths` open."""
    targets = {os.path.realpath(p) for p in paths}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{process.args!r} exited with {process.returncode}")
        opened = set()
        with contextlib.suppress(OSError):
            for entry in os.scandir(f"/proc/{process.pid}/fd"):
                with contextlib.suppress(OSError):
                    opened.add(os.readlink(entry.path))
        if targets <= opened:
            return
        time.sleep(0.02)
    raise BenchError(f"{process.args!r} did not open {sorted(targets)}")


def _cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """CPU time a running process has used so far, all its threads (the
    shim's recorder, SIEM sender and tamper threads too), in seconds; 0 for
    none. /proc/PID/schedstat alone would count the main thread only."""
    if process is None:
        return 0.0
    total = 0
    for task in Path(f"/proc/{process.pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that has just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


# -- the configurations --------------------------------------------------------

Starter = Callable[["Workspace", Path, Plan], Topology]


def start_floor(ws: Workspace, where: Path, plan: Plan) -> Topology:
    client = ws.pty_pair(where / "tech")
    return Topology("floor", client, ws.open_raw(where / "tech"))


def start_socat(ws: Workspace, where: Path, plan: Plan) -> Topology:
    tech, dev = where / "tech", where / "dev"
    client, peer = ws.pty_pair(tech), ws.pty_pair(dev)
    log = where / "socat.log"
    with log.open("wb") as out:
        relay = ws.spawn(
            ["socat", "-b", str(plan.block), f"FILE:{tech},raw,echo=0", f"FILE:{dev},raw,echo=0"],
            output=out,
        )
    _wait_opened(relay, [tech, dev], 10)
    return Topology("socat", client, peer, relay, log)


def start_shim(
    ws: Workspace, where: Path, plan: Plan, env: dict[str, str] | None = None
) -> Topology:
    """The real daemon, authenticated: returns once pass-through is enabled."""
    tech, dev = where / "tech", where / "dev"
    client, peer = ws.pty_pair(tech), ws.pty_pair(dev)
    secret = generate_totp_secret(os.urandom)
    config = where / "shim.yaml"
    config.write_text(
        SHIM_CONFIG.format(
            tech=tech,
            dev=dev,
            root=where / "storage",
            technician=TECHNICIAN,
            secret=secret,
            max_bytes=session_bytes(plan),
        )
        + _shim_extra_config(plan)
    )
    log = where / "shim.log"
    with log.open("wb") as out:
        relay = ws.spawn(
            [sys.executable, "-m", "shimmfa", "run", "--config", str(config)],
            output=out,
            env=env,
        )
    _read_until(client, BANNER, 20)
    code = totp_code(decode_secret(secret), int(time.time() // 30), 6, "SHA1")
    os.write(client, f"{TECHNICIAN} {code}\r".encode())
    _read_until(client, OPENED, 10)
    return Topology("shim", client, peer, relay, log)


STARTERS: dict[str, Starter] = {"floor": start_floor, "socat": start_socat, "shim": start_shim}


def start_all(ws: Workspace, plan: Plan, starters: dict[str, Starter]) -> dict[str, Topology]:
    tops = {}
    for name, starter in starters.items():
        where = ws.root / name
        where.mkdir()
        top = starter(ws, where, plan)
        _probe(top.client, top.peer)
        _probe(top.peer, top.client)
        tops[name] = top
    return tops


def _check_alive(tops: dict[str, Topology]) -> None:
    for top in tops.values():
        if top.relay is not None and top.relay.poll() is not None:
            raise BenchError(f"{top.name} exited with {top.relay.returncode}; see {top.log}")


# -- measurements --------------------------------------------------------------


def measure_pings(ws: Workspace, tops: dict[str, Topology], plan: Plan) -> dict[str, Any]:
    """One round of pings on every topology, twice: back to back (`ping_block`
    pings on one topology, then the next; the acceptance numbers), and
    isolated (one ping per topology in turn, so each relay has been idle for
    the others' round trips, as between a technician's keystrokes)."""
    echoes = [ws.spawn(["socat", f"FD:{t.peer}", "PIPE"], fds=(t.peer,)) for t in tops.values()]
    results: dict[str, Any] = {name: {} for name in tops}
    try:
        for top in tops.values():
            _probe(top.client, top.client)
        for prefix, block in (("", plan.ping_block), ("iso_", 1)):
            clients = [top.client for top in tops.values()]
            cpu_before = {name: _cpu_seconds(top.relay) for name, top in tops.items()}
            pinger = ws.spawn(
                [sys.executable, str(PEERS), "ping", str(plan.pings), str(plan.warmup), str(block)]
                + [str(fd) for fd in clients],
                fds=tuple(clients),
            )
            try:
                samples = _read_json(pinger, STEP_TIMEOUT)
            finally:
                ws.stop(pinger)
            _check_alive(tops)
            sent = -(-(plan.warmup + plan.pings) // block) * block
            for name, top in tops.items():
                mine = samples[str(top.client)]
                cpu = (_cpu_seconds(top.relay) - cpu_before[name]) * 1e6 / sent
                results[name] |= {
                    f"{prefix}p50_us": percentile(mine, 0.50) / 1e3,
                    f"{prefix}p99_us": percentile(mine, 0.99) / 1e3,
                    f"{prefix}relay_cpu_us_per_ping": cpu,
                }
    finally:
        for echo in echoes:
            ws.stop(echo)
        for top in tops.values():
            _drain(top.client, top.peer)
    return results


def measure_bulk(ws: Workspace, src: int, dst: int, plan: Plan, crc: bool) -> float:
    """MiB/s of `plan.nbytes` written at `src` and read at `dst`."""
    sink_args = [sys.executable, str(PEERS), "sink", str(dst), str(plan.nbytes)]
    sink = ws.spawn(sink_args + (["--crc"] if crc else []), fds=(dst,))
    source: subprocess.Popen[bytes] | None = None
    try:
        _read_json(sink, 30)
        source = ws.spawn(
            [sys.executable, str(PEERS), "source", str(src), str(plan.nbytes)], fds=(src,)
        )
        got = _read_json(sink, STEP_TIMEOUT)
        sent = _read_json(source, 30)
    finally:
        for process in (source, sink):
            if process is not None:
                ws.stop(process)
    extra = _drain(src, dst)
    if got["received"] != plan.nbytes or sent["sent"] != plan.nbytes or extra:
        raise BenchError(
            f"byte count mismatch: sent {sent['sent']}, received {got['received']}, "
            f"{len(extra)} more bytes after the transfer: {extra[:120]!r}"
        )
    if crc and got["crc"] != expected_crc(plan.nbytes):
        raise BenchError("CRC-32 of the received data does not match what was sent")
    seconds = (int(got["end_ns"]) - int(sent["start_ns"])) / 1e9
    return plan.nbytes / MIB / seconds


def run_round(
    ws: Workspace, tops: dict[str, Topology], plan: Plan, round_no: int
) -> dict[str, dict[str, Any]]:
    results = measure_pings(ws, tops, plan)
    names = list(tops)
    shift = round_no % len(names)
    crc = round_no == 0
    for name in names[shift:] + names[:shift]:
        top = tops[name]
        for key, src, dst in (("t2d", top.client, top.peer), ("d2t", top.peer, top.client)):
            try:
                results[name][f"{key}_mib_s"] = measure_bulk(ws, src, dst, plan, crc)
            except BenchError as exc:
                raise BenchError(f"{name} {key}: {exc}") from None
        results[name]["crc_checked"] = crc
        _check_alive(tops)
    return results


def stop_all(ws: Workspace, tops: dict[str, Topology]) -> None:
    for top in tops.values():
        if top.relay is not None:
            code = ws.stop(top.relay)
            if top.name == "shim" and code != 0:
                raise BenchError(f"the shim exited with {code} on SIGTERM; see {top.log}")


# -- report --------------------------------------------------------------------

COLUMNS = (
    ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"),
    ("t2d_mib_s", "MiB/s t→d"),
    ("d2t_mib_s", "MiB/s d→t"),
    ("iso_p50_us", "iso p50"),
    ("iso_p99_us", "iso p99"),
    ("relay_cpu_us_per_ping", "CPU µs/ping"),
)
LEGEND = (
    "p50/p99: back-to-back 1-byte pings; iso: isolated pings (the relay idle in between), "
    "µs;\nCPU: the relay process's CPU time, all threads, per back-to-back ping (schedstat)"
)


def summarise(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    return {
        name: {key: statistics.median(r[key] for r in results) for key, _ in COLUMNS}
        for name, results in rounds.items()
    }


RATIOS = (
    ("p50_us", "shim p50 / socat p50", "<=", LIMITS["p50"]),
    ("p99_us", "shim p99 / socat p99", "<=", LIMITS["p99"]),
    ("t2d_mib_s", "shim t→d / socat t→d", ">=", LIMITS["t2d"]),
    ("d2t_mib_s", "shim d→t / socat d→t", ">=", LIMITS["d2t"]),
)


def verdicts(rounds: dict[str, list[dict[str, Any]]], auth: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ratio is the median of the per-round ratios: within a round the
    configurations ran side by side, so a round is the fairest comparison."""
    checks = []
    for key, what, op, limit in RATIOS:
        per_round = [s[key] / b[key] for s, b in zip(rounds["shim"], rounds["socat"], strict=True)]
        checks.append((what, statistics.median(per_round), per_round, op, limit))
    checks.append(("auth p99 (ms)", auth["p99_ms"], [], "<=", LIMITS["auth_p99_ms"]))
    return [
        {
            "check": what,
            "value": value,
            "per_round": per_round,
            "limit": f"{op} {limit}",
            "ok": value <= limit if op == "<=" else value >= limit,
        }
        for what, value, per_round, op, limit in checks
    ]


def _row(label: str, values: dict[str, float]) -> str:
    return f"{label:<10}" + "".join(f"{values[key]:>12.1f}" for key, _ in COLUMNS)


def print_report(
    rounds: dict[str, list[dict[str, Any]]],
    summary: dict[str, dict[str, float]],
    auth: dict[str, Any],
    checks: list[dict[str, Any]],
    plan: Plan,
) -> None:
    print(
        f"\nrelay benchmark: {plan.rounds} round(s) of {plan.pings} pings per config and "
        f"{plan.nbytes // MIB} MiB each way; socat -b {plan.block}; medians over rounds"
    )
    print(f"{'config':<10}" + "".join(f"{title:>12}" for _, title in COLUMNS))
    for name in summary:
        print(_row(name, summary[name]))
    print(LEGEND)
    if plan.rounds > 1:
        print("per round:")
        for name, results in rounds.items():
            for n, result in enumerate(results):
                print(_row(f"  {name} {n + 1}", result))
    print(
        f"auth decision with durable commit: n={auth['count']} {auth['outcomes']}: "
        f"p50 {auth['p50_ms']:.3f} ms, p99 {auth['p99_ms']:.3f} ms"
    )
    print("acceptance (ratios: median of the per-round ratios):")
    for check in checks:
        mark = "PASS" if check["ok"] else "FAIL"
        rounds_text = " ".join(f"{r:.2f}" for r in check["per_round"])
        print(
            f"  {mark}  {check['check']:<22} {check['value']:6.2f}  (limit {check['limit']})"
            + (f"  rounds: {rounds_text}" if len(check["per_round"]) > 1 else "")
        )


def run(plan: Plan, starters: dict[str, Starter] | None = None) -> dict[str, Any]:
    """Measure every configuration in `starters`; the results, not printed."""
    ws = Workspace(Path(tempfile.mkdtemp(prefix="shimmfa-bench-")))
    starters = starters or STARTERS
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in starters}
    try:
        tops = start_all(ws, plan, starters)
        for round_no in range(plan.rounds):
            for name, result in run_round(ws, tops, plan, round_no).items():
                rounds[name].append(result)
                print(
                    f"round {round_no + 1}/{plan.rounds} {name:<6} "
                    f"p50 {result['p50_us']:7.1f} µs  p99 {result['p99_us']:7.1f} µs  "
                    f"t→d {result['t2d_mib_s']:7.1f} MiB/s  d→t {result['d2t_mib_s']:7.1f} MiB/s",
                    flush=True,
                )
        stop_all(ws, tops)
    finally:
        ws.close()
    return {"plan": asdict(plan), "rounds": rounds, "summary": summarise(rounds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 if a ratio fails")
    parser.add_argument("--rounds", type=int, help="rounds (default 9; 1 with --quick)")
    parser.add_argument("--block", type=int, default=SOCAT_BLOCK, help="socat -b (bytes)")
    siem = parser.add_mutually_exclusive_group()
    siem.add_argument("--siem-endpoint", help="shim's syslog SIEM: tcp://host:port or tls://...")
    siem.add_argument(
        "--hung-siem", action="store_true", help="point the shim at a SIEM that never reads"
    )
    parser.add_argument("--heartbeat-period", type=float, help="shim heartbeat period (s)")
    args = parser.parse_args()
    if args.quick:
        plan = Plan(1, 1000, 100, 100, 4 * MIB, args.block, 400)
    else:
        plan = Plan(9, 5000, 300, 100, 64 * MIB, args.block, 2000)
    if args.rounds:
        plan.rounds = args.rounds
    hung = HungReceiver() if args.hung_siem else None
    plan.siem_endpoint = hung.endpoint if hung else args.siem_endpoint
    plan.heartbeat_period = args.heartbeat_period

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    load = os.getloadavg()[0]
    print(f"load average before the run: {load:.2f} (other jobs on the machine skew the numbers)")
    if plan.siem_endpoint:
        hung_note = " (hung: accepts, never reads)" if hung else ""
        print(f"shim SIEM: syslog to {plan.siem_endpoint}{hung_note}")
    try:
        results = run(plan)
        auth = measure_auth(plan.auth_count)
        if hung is not None:
            print(
                f"hung SIEM: {len(hung.accepted)} connection(s) accepted, "
                f"{hung.unread()} bytes left unread in them"
            )
    except BenchError as exc:
        print(f"relay_bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if hung is not None:
            hung.close()
    checks = verdicts(results["rounds"], auth)
    print_report(results["rounds"], results["summary"], auth, checks, plan)
    if args.json:
        machine = {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": load,
            "socat": subprocess.run(
                ["socat", "-V"], capture_output=True, text=True, check=False
            ).stdout.splitlines()[1:2],
        }
        results |= {"machine": machine, "auth": auth, "checks": checks, "hung_siem": bool(hung)}
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if args.check and not all(c["ok"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
