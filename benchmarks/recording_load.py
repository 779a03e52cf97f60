"""What the recording's cryptography costs the wire on this machine, whoever
does it: socat's bulk throughput alone, and while an unrelated process seals
frames exactly as the recorder does (ChaCha20-Poly1305 + the BLAKE3 chain,
`RecordingEncoder`), paced at the rate socat moves bytes.

This is evidence for reading `relay_bench.py`'s bulk ratio, not an
acceptance test: the shim has to do this work for every byte it relays
(the recording is always on), so the ratio "socat + sealer / socat" is
roughly the best the shim's bulk ratio can be here. A third variant, a
process that wakes on the same period and does nothing, shows whether the
cost is the work or the wake-ups.

    python benchmarks/recording_load.py [--rounds 5] [--json FILE]

Each round measures the three variants in a rotated order, 64 MiB each way;
the ratios are medians of the per-round ratios. Every process, PTY and
temporary directory is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relay_bench as rb  # noqa: E402 - the bench next to this file

FRAME = 256 << 10
VARIANTS = ("alone", "sealer", "waker")


def sealer(rate_mib_s: float, work: bool) -> None:
    """Seal FRAME-byte frames at `rate_mib_s` until killed (or just wake)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shimmfa.core.recording import Header, RecordingEncoder

    key = Ed25519PrivateKey.generate()
    header = Header("load", "load", "load", time.time(), "ed25519:load", (), b"")
    encoder = RecordingEncoder(header, os.urandom(32), key.sign)
    plaintext = os.urandom(FRAME)
    period = FRAME / (rate_mib_s * rb.MIB)
    print(json.dumps({"ready": True}), flush=True)
    due = checkpoint = time.monotonic()
    while True:
        if work:
            encoder.packed_frame_parts(plaintext, FRAME, 0, time.time())
            if time.monotonic() - checkpoint >= 1.0:  # as the recorder, once a second
                encoder.checkpoint()
                checkpoint = time.monotonic()
        due += period
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def measure(
    ws: rb.Workspace, top: rb.Topology, plan: rb.Plan, variant: str, rate: float
) -> tuple[float, float]:
    load = None
    if variant != "alone":
        work = "1" if variant == "sealer" else "0"
        load = ws.spawn([sys.executable, __file__, "--load", str(rate), work])
        rb._read_json(load, 30)
    try:
        t2d = rb.measure_bulk(ws, top.client, top.peer, plan, False)
        d2t = rb.measure_bulk(ws, top.peer, top.client, plan, False)
    finally:
        if load is not None:
            ws.stop(load)
    return t2d, d2t


def run(rounds: int) -> dict[str, object]:
    plan = rb.Plan(
        rounds=rounds, pings=0, warmup=0, ping_block=1, nbytes=64 << 20, block=65536, auth_count=0
    )
    ws = rb.Workspace(Path(tempfile.mkdtemp(prefix="shimmfa-load-")))
    try:
        top = rb.start_all(ws, plan, {"socat": rb.start_socat})["socat"]
        rate = statistics.median(measure(ws, top, plan, "alone", 0.0))
        print(f"socat alone, calibration: {rate:.1f} MiB/s; the sealer runs at that rate")
        results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        for number in range(rounds):
            order = VARIANTS[number % 3 :] + VARIANTS[: number % 3]
            for variant in order:
                results[variant].append(measure(ws, top, plan, variant, rate))
            line = "  ".join(f"{v} {r[-1][0]:.1f}/{r[-1][1]:.1f}" for v, r in results.items())
            print(f"round {number + 1}: {line}")
        rb.stop_all(ws, {"socat": top})
    finally:
        ws.close()
    ratios = {
        variant: statistics.median(
            mine[i] / alone[i]
            for mine, alone in zip(results[variant], results["alone"], strict=True)
            for i in (0, 1)
        )
        for variant in ("sealer", "waker")
    }
    print("MiB/s t→d / d→t, median of rounds:")
    for variant in VARIANTS:
        t2d = statistics.median(r[0] for r in results[variant])
        d2t = statistics.median(r[1] for r in results[variant])
        print(f"  socat {variant:7s} {t2d:6.1f} / {d2t:6.1f}")
    print(f"socat with the recording's crypto next to it: {ratios['sealer']:.2f} of alone")
    print(f"socat with a process waking as often, idle:   {ratios['waker']:.2f} of alone")
    return {"rate_mib_s": rate, "rounds": results, "ratios": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--load", nargs=2, help=argparse.SUPPRESS)  # the sealer process
    args = parser.parse_args()
    if args.load:
        sealer(float(args.load[0]), args.load[1] == "1")
        return 0
    results = run(args.rounds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
