"""A deterministic `randbytes` for tests that must repeat a draw exactly."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable


def drbg(seed: bytes) -> Callable[[int], bytes]:
    """n bytes of SHAKE-256 over the seed and a call counter, per call."""
    counter = itertools.count()
    return lambda n: hashlib.shake_256(seed + next(counter).to_bytes(8, "big")).digest(n)
