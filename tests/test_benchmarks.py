"""The benchmarks `make bench` runs still run: each one, in its shortest
form, against the real daemon and programs, exits 0 and writes its JSON
report. No figure is judged here (speed is judged by the benchmarks
themselves, on a quiet machine); what is judged is that a change to the
package did not leave them broken, e.g. an import that moved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_bench(tmp_path: Path, script: str, *args: str) -> dict[str, object]:
    report = tmp_path / f"{script}.json"
    tests = str(Path(__file__).resolve().parent)  # central_ingest shares the test fixtures
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": tests},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, object] = json.loads(report.read_text())
    return result


def test_relay_bench_quick_relays_every_byte_and_reports_each_ratio(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "relay_bench.py", "--quick")
    checks = report["checks"]
    assert isinstance(checks, list)
    assert [c["check"] for c in checks] == [
        "shim p50 / socat p50",
        "shim p99 / socat p99",
        "shim t→d / socat t→d",
        "shim d→t / socat d→t",
        "auth p99 (ms)",
    ]
    assert all(c["value"] > 0 for c in checks)


def test_gate_fuzz_finds_no_crash_and_no_forwarded_byte(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "gate_fuzz.py", "--inputs", "2000", "--check")
    assert report["ok"] is True
    assert report["inputs"] == 2000


def test_tamper_bench_measures_every_trial(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "tamper_bench.py", "--trials", "3")
    trials = report["trials"]
    assert isinstance(trials, list)
    assert len(trials) == 3


def test_recording_load_measures_each_variant(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "recording_load.py", "--rounds", "1")
    ratios = report["ratios"]
    assert isinstance(ratios, dict)
    assert set(ratios) == {"sealer", "waker"}


def test_central_ingest_measures_heartbeats_the_floor_and_missing_detection(
    tmp_path: Path,
) -> None:
    report = run_bench(tmp_path, "central_ingest.py", "--quick")
    heartbeats, floor = report["heartbeats"], report["floor"]
    assert isinstance(heartbeats, dict) and isinstance(floor, dict)
    assert heartbeats["requests"] > 0 and heartbeats["errors"] == 0
    assert floor["requests"] > 0
    assert report["missing_after_s"] is not None


def test_central_ui_times_every_page_on_postgresql(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "central_ui.py", "--quick")
    pages = report["pages"]
    assert isinstance(pages, list) and len(pages) >= 15
    assert all(page["status"] == 200 for page in pages), pages
