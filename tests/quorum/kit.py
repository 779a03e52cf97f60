"""What the quorum tests share: the real peers (Debian's `age`,
`age-keygen`, `oathtool`), a manual clock, and quick deals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shimmfa.core.toc import Toc
from shimmfa.core.toc_deal import deal, deal_groups
from shimmfa.errors import QuorumError

SECRET = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - farMFA's published example
T0 = 1_700_000_010.0  # the start of a 30 s TOTP step

needs_age = pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("age-keygen") is None,
    reason="Debian's age is not installed (make test installs it)",
)
needs_oathtool = pytest.mark.skipif(
    shutil.which("oathtool") is None, reason="Debian's oathtool is not installed"
)


def refusal(call: Callable[[], object]) -> str:
    """The reason of the QuorumError `call()` raises (it must raise one)."""
    with pytest.raises(QuorumError) as caught:
        call()
    return caught.value.reason


class ManualClock:
    """A clock the test moves."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def oathtool(secret: str, at: float) -> str:
    """`oathtool --totp -b` at the moment `at` (SHA1, 6 digits, 30 s)."""
    done = subprocess.run(
        ["oathtool", "--totp", "-b", "-N", f"@{int(at)}", secret],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def age_keygen(path: Path) -> str:
    """A new identity file made by Debian's `age-keygen`; its recipient."""
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True, timeout=30)
    return subprocess.run(
        ["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def age_encrypt(plaintext: str, recipient: str) -> str:
    """`age -r RECIPIENT -a`, as a farMFA constituent seals a Toc."""
    return subprocess.run(
        ["age", "-r", recipient, "-a"],
        input=plaintext,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def age_decrypt(armored: str, identity: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["age", "-d", "-i", str(identity)],
        input=armored,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def one_group(size: int = 3, threshold: int = 2, secret: str = SECRET) -> list[Toc]:
    return deal(secret, size, threshold, randbytes=os.urandom)


def and_deal(secret: str = SECRET) -> dict[str, list[Toc]]:
    """2 of 3 clinical engineers AND 1 of 2 information security officers."""
    return deal_groups(
        secret,
        {"clinical": (["ann", "bob", "cat"], 2), "infosec": (["ivan", "ines"], 1)},
        randbytes=os.urandom,
    )


SHIMMFA = Path(sys.executable).with_name("shimmfa")


def shimmfa(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `shimmfa` command, as a person runs it."""
    return subprocess.run(
        [str(SHIMMFA), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
