"""Auth decision time with the durable commit, as the daemon makes it.

A `TotpGate` over a real `StateStore` (SQLite, WAL, synchronous=FULL) in a
temporary directory on the same file system as the system's temp dir, with
the technicians looked up through `TechnicianDirectory` like `shimmfa run`
does. The clock is a fake that advances one TOTP period per round, so every
round can have a fresh valid code. Each round tries, for one technician:
OK (the current code), REPLAY (the same code again), BAD_CODE (a wrong code)
and BAD_USER (an unknown ID). An OK resets the failures, so nobody is locked
out and the mix stays as planned; the outcome counts are checked.

Run alone: `python benchmarks/auth_bench.py [--count N]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from shimmfa.core.totp import (
    AuthResult,
    TechnicianRecord,
    TotpGate,
    decode_secret,
    generate_totp_secret,
    totp_code,
)
from shimmfa.shim.state.store import StateStore
from shimmfa.shim.state.technicians import TechnicianDirectory

PERIOD = 30
TECHNICIANS = 8
START = 1_900_000_000.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def measure_auth(count: int, workdir: Path | None = None) -> dict[str, object]:
    """Time `count` (at least) authentications; p50/p99 in milliseconds."""
    root = Path(tempfile.mkdtemp(prefix="shimmfa-authbench-", dir=workdir))
    store = StateStore(root)
    try:
        records = {
            f"tech{n}@example.org": TechnicianRecord(
                f"tech{n}@example.org", generate_totp_secret(os.urandom)
            )
            for n in range(TECHNICIANS)
        }
        keys = {tid: decode_secret(r.totp_secret) for tid, r in records.items()}
        clock = FakeClock(START)
        gate = TotpGate(
            TechnicianDirectory(records, store),
            time_source=clock,
            period=PERIOD,
            store=store,
        )
        ids = list(records)
        samples: list[float] = []
        outcomes: Counter[str] = Counter()
        mismatches = 0
        rounds = (count + 3) // 4
        for round_no in range(rounds):
            clock.now = START + round_no * PERIOD
            tid = ids[round_no % len(ids)]
            code = totp_code(keys[tid], int(clock.now // PERIOD), 6, "SHA1")
            wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
            for expected, (who, what) in (
                (AuthResult.OK, (tid, code)),
                (AuthResult.REPLAY, (tid, code)),
                (AuthResult.BAD_CODE, (tid, wrong)),
                (AuthResult.BAD_USER, (f"nobody{round_no}@example.org", code)),
            ):
                started = time.perf_counter_ns()
                outcome = gate.authenticate(who, what)
                samples.append((time.perf_counter_ns() - started) / 1e6)
                outcomes[outcome.result.value] += 1
                mismatches += outcome.result is not expected
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "count": len(samples),
        "p50_ms": percentile(samples, 0.50),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples),
        "mean_ms": statistics.fmean(samples),
        "outcomes": dict(outcomes),
        "unexpected_outcomes": mismatches,
        "dir": str(Path(tempfile.gettempdir()) if workdir is None else workdir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    result = measure_auth(args.count)
    print(
        f"auth decision with durable commit: n={result['count']} "
        f"p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
        f"max {result['max_ms']:.3f} ms  outcomes {result['outcomes']}"
    )


if __name__ == "__main__":
    main()
