"""Waiting in tests: for a condition, with a deadline, never a fixed sleep.

Importable from every test directory (`pythonpath = ["tests"]` in
pyproject.toml)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

POLL = 0.005
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    what: str = "the condition",
    timeout: float = 10.0,
    detail: Callable[[], object] | None = None,
) -> T:
    """Poll `predicate` until it returns something true, and return that;
    fail after `timeout` seconds, saying what was awaited (and `detail()`,
    what there was instead)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            got = f"; got {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{got}")
        time.sleep(POLL)
    return value
