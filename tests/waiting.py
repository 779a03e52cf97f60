"""Waiting in tests: for a condition, with a deadline, never a fixed sleep.

Importable from every test directory (`pythonpath = ["tests"]` in
pyproject.toml)."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL = 0.005


def wait_for(
    predicate: Callable[[], object], what: str = "the condition", timeout: float = 10.0
) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds,
    saying what was awaited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)
