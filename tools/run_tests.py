"""`make test`: the whole suite as two pytest processes side by side.

One runs the `exclusive` tests (PTYs, the real daemon, the browser, the
benchmarks: one at a time, see tests/conftest.py), the other everything
else; on two cores that halves the wall time. The exclusive half prints as
it goes; the other half's output follows when both are done.

Exit status: 0 when both pass; else the first failing half's status. With
no arguments (the whole suite), a half that collects no test (pytest's 5)
is a failure: the suite lost its tests. With arguments (a part of it), only
both halves collecting nothing is.

Usage: python tools/run_tests.py [pytest arguments...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

NO_TESTS = 5


def main(args: list[str]) -> int:
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    with tempfile.TemporaryDirectory(prefix="shimmfa-tests-") as scratch:
        root = Path(scratch)
        log_path = root / "other.log"
        with log_path.open("wb") as log:
            other = subprocess.Popen(  # noqa: S603 - our own interpreter and pytest
                [*base, "-m", "not exclusive", "--basetemp", str(root / "other")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                exclusive = subprocess.call(  # noqa: S603
                    [*base, "-m", "exclusive", "--basetemp", str(root / "exclusive")]
                )
                print("\n== the other tests (run beside the exclusive ones) ==", flush=True)  # noqa: T201
                rest = other.wait()
            finally:
                if other.poll() is None:
                    other.kill()
                    other.wait()
        sys.stdout.write(log_path.read_text(errors="replace"))
    halves = (("exclusive", exclusive), ("other", rest))
    empty = [half for half, status in halves if status == NO_TESTS]
    if len(empty) == 2 or (empty and not args):
        print(f"pytest collected no {' and no '.join(empty)} tests", file=sys.stderr)  # noqa: T201
        return 1
    return next((status for status in (exclusive, rest) if status not in (0, NO_TESTS)), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
