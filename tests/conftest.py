"""Suite-wide: how `make test` spreads the tests over pytest-xdist workers.

Tests that open PTYs, run the real daemon, drive the browser or run the
benchmarks stay in one group, on one worker, one after another: a PTY's
number is reused as soon as it is closed, and a daemon that reopens its
port by path after a hang-up must never find another test's PTY there.
Everything else (pure logic, the central service's API, the oracle) runs
on the other workers beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SERIAL_DIRS = ("e2e", "ui")
SERIAL_FILES = {"test_benchmarks.py", "test_cli_recording.py", "test_packaging.py"}
SERIAL_PATHS = {TESTS / "shim" / "link" / "test_wire.py"}


def _serial(path: Path) -> bool:
    relative = path.relative_to(TESTS)
    return (
        relative.parts[0] in SERIAL_DIRS
        or (len(relative.parts) == 1 and relative.name in SERIAL_FILES)
        or path in SERIAL_PATHS
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _serial(Path(item.path)):
            item.add_marker(pytest.mark.xdist_group("serial"))
