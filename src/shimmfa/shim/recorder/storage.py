"""The recordings' disk: what they use, against the budget and the free space.

Rules:
- `problem()` says why a new session cannot be recorded now, or None: the
  recordings use `budget_bytes`, free space is below `min_free_bytes` (never
  below MIN_FREE_FLOOR, room for a header and a footer), or a write failed
  for lack of space (ENOSPC/EDQUOT) and no space has been freed since.
- What recordings use is counted from the files at start, then from what
  is written; counted from the files again whenever it reaches the budget,
  so recordings moved off the shim (or deleted once central holds them,
  `recording.delete_after_upload`) free their space. Nothing here deletes
  anything.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

MIN_FREE_FLOOR = 256 << 10


class RecordingStorage:
    def __init__(self, directory: Path, suffix: str, budget_bytes: int, min_free_bytes: int):
        self._dir = directory
        self._suffix = suffix
        self._budget = budget_bytes
        self._min_free = min_free_bytes
        self.used = self._count()
        self._full_at: int | None = None  # free bytes when a write last found the disk full

    def _count(self) -> int:
        total = 0
        for path in self._dir.glob(f"*{self._suffix}"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # removed meanwhile
                continue
        return total

    def problem(self) -> str | None:
        """Why a new session cannot be recorded now, or None."""
        if self.used >= self._budget:
            self.used = self._count()
        if self.used >= self._budget:
            return f"recordings use {self.used} bytes of a {self._budget}-byte budget"
        free = shutil.disk_usage(self._dir).free
        if free < max(self._min_free, MIN_FREE_FLOOR):
            return f"only {free} bytes free on the recording disk"
        full_at = self._full_at
        if full_at is not None:
            if free <= full_at:
                return f"the recording disk is full ({free} bytes free)"
            self._full_at = None
        return None

    def write_failed(self, exc: BaseException) -> None:
        """A write that failed for lack of space makes `problem` say so
        (whatever `min_free_bytes` is) until some space is freed."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                self._full_at = shutil.disk_usage(self._dir).free
            except OSError:
                self._full_at = 0
