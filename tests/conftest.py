"""Suite-wide: which tests are `exclusive`.

`make test` (tools/run_tests.py) runs the suite as two pytest processes side
by side: the `exclusive` tests in one, everything else in the other. Serial are
the tests that open PTYs, run the real daemon, drive the browser or run the
benchmarks: a PTY's number is reused as soon as it is closed, and a daemon
that reopens its port by path after a hang-up must never find another
test's PTY there, so they run one after another. Everything else (pure
logic, the central service's API, the oracle) runs beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
EXCLUSIVE_DIRS = ("e2e", "ui")
EXCLUSIVE_FILES = {"test_benchmarks.py", "test_cli_recording.py", "test_packaging.py"}
EXCLUSIVE_PATHS = {TESTS / "shim" / "link" / "test_wire.py"}


def _exclusive(path: Path) -> bool:
    relative = path.relative_to(TESTS)
    return (
        relative.parts[0] in EXCLUSIVE_DIRS
        or (len(relative.parts) == 1 and relative.name in EXCLUSIVE_FILES)
        or path in EXCLUSIVE_PATHS
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _exclusive(Path(item.path)):
            item.add_marker(pytest.mark.exclusive)
