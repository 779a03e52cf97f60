"""Helpers for the servers the tests run in subprocesses (central, the
quorum oracle): each is started in its own session, so stopping it ends
its workers too."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop_group(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM to the process group (uvicorn and its workers), SIGKILL if it
    has not ended within `timeout`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def log_tail(path: Path, size: int = 3000) -> str:
    """The end of a server's log, for a failure message."""
    return path.read_text(errors="replace")[-size:] if path.exists() else ""
