"""`shimmfa demo`: the whole system on this machine, no hardware needed.

The central service over HTTPS on 127.0.0.1 (`central`), then two PTY
pairs, a config, an enrolled demo technician (QR code + URI), the
simulated device and the real `shimmfa run` daemon, registered with central
and heartbeating to it (`shim`); the terminal is attached as the technician
(Ctrl-] then h hangs up, then q quits). `--check` runs the same flow unattended and prints a PASS
report (`check`); without a terminal on stdin the demo runs the check.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from shimmfa.demo.check import run_checks
from shimmfa.demo.shim import SHIM_ID, Demo, attach, running_demo
from shimmfa.errors import DemoError

__all__ = ["main"]


def _stopped_at_central(demo: Demo) -> str:
    try:
        if demo.central is None:
            raise DemoError("the demo has no central service")
        demo.central.wait_status(SHIM_ID, "stopped", timeout=10)
    except DemoError as exc:
        return f"  FAIL  central shows the stopped shim stopped: {exc}"
    return "  PASS  central shows the stopped shim stopped (shim_stopping arrived)"


def main(*, check: bool, workdir: Path | None) -> int:
    if not check and not sys.stdin.isatty():
        print("stdin is not a terminal: running the unattended check instead.")  # noqa: T201
        check = True
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="shimmfa-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with running_demo(root) as demo:
            if not check:
                attach(demo)
                return 0
            report = run_checks(demo)
            shim = demo.processes[-1]
            shim.send_signal(signal.SIGTERM)
            code = shim.wait(timeout=5)
            report.append(f"  {'PASS' if code == 0 else 'FAIL'}  shim exits {code} on SIGTERM")
            report.append(_stopped_at_central(demo))
        print("\nshimmfa demo --check")  # noqa: T201
        print("\n".join(report))  # noqa: T201
        ok = all(line.startswith("  PASS") for line in report)
        print(f"{'PASS' if ok else 'FAIL'} in {time.monotonic() - started:.1f} s")  # noqa: T201
        return 0 if ok else 1
    finally:
        if temporary and check:  # an interactive demo keeps its recordings to replay
            shutil.rmtree(root, ignore_errors=True)
