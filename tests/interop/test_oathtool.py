"""Cross-check against Debian's `oathtool` (OATH Toolkit): the codes it
prints are the codes our gate accepts, for every algorithm and length we
support, and the stored vectors in tests/vectors/oathtool.json still hold."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shimmfa.core.totp import AuthResult, TechnicianRecord, TotpGate, decode_secret, totp_code

OATHTOOL = shutil.which("oathtool")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        OATHTOOL is None, reason="Debian's oathtool is not installed (apt-get install oathtool)"
    ),
]

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "oathtool.json").read_text()
)
# Key sizes that match each HMAC's block of output: 160, 256 and 512 bits.
SECRETS = {
    "SHA1": base64.b32encode(bytes(range(1, 21))).decode(),
    "SHA256": base64.b32encode(bytes(range(101, 133))).decode(),
    "SHA512": base64.b32encode(bytes(range(7, 71))).decode(),
}
TIMES = [0, 59, 1_111_111_109, 1_700_000_029, 1_700_000_030, 4_102_444_799]


def oathtool(secret: str, algorithm: str, digits: int, when: int) -> str:
    assert OATHTOOL is not None
    result = subprocess.run(
        [
            OATHTOOL,
            f"--totp={algorithm}",
            f"--digits={digits}",
            "--base32",
            "-N",
            f"@{when}",
            secret,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize("when", TIMES)
@pytest.mark.parametrize("digits", [6, 8])
@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
def test_our_codes_equal_oathtools(algorithm: str, digits: int, when: int) -> None:
    secret = SECRETS[algorithm]
    expected = oathtool(secret, algorithm, digits, when)
    assert len(expected) == digits
    assert totp_code(decode_secret(secret), when // 30, digits, algorithm) == expected
    gate = TotpGate(
        {"t": TechnicianRecord("t", secret)},
        time_source=lambda: float(when),
        digits=digits,
        algorithm=algorithm,
    )
    outcome = gate.authenticate("t", expected)
    assert outcome.result is AuthResult.OK
    assert outcome.period == when // 30


@pytest.mark.parametrize(
    "vector", VECTORS["vectors"], ids=lambda v: f"{v['secret'][:6]}-{v['time']}"
)
def test_stored_vectors_still_match_oathtool(vector: dict[str, Any]) -> None:
    code = oathtool(vector["secret"], vector["algorithm"], vector["digits"], vector["time"])
    assert code == vector["code"]
