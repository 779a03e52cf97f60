"""A background loop the daemon starts and stops: one daemon thread that
runs `_run` until `stop()`, woken early by `wake()`. The bundle sync and
the recording uploader are two (each decides in `_run` what to do and how
long to wait, on `_stopping` and `_wake`)."""

from __future__ import annotations

import threading

__all__ = ["BackgroundLoop"]


class BackgroundLoop:
    thread_name = "loop"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.thread_name} was started already")
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Work now, not at the next period (a recording ended; a test)."""
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the loop; False if its thread did not end within `timeout`
        (a request under way is left to its own timeout)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError
