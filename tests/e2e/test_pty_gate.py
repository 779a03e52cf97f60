"""The gate dialogue as a technician sees it on a real PTY, against the real
daemon: exact texts, no user enumeration, and no unauthenticated byte ever
reaching the device."""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

import pytest

from shimmfa.core.session import valid_session_id

pytestmark = pytest.mark.e2e

BANNER = b"\r\nShim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
FORMAT = b"\r\nFormat: <technician_id> <totp_code>\r\n> "
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
SUCCESS = re.compile(
    rb"\r\nAuthenticated as (?P<id>[^;\r\n]+); session (?P<sid>[^\r\n]+)\r\n"
    rb"Pass-through enabled\. Disconnect to end session\.\r\n"
)


def test_banner_is_byte_exact(make_shim):
    rig = make_shim(ready=False, gate={"echo": False})

    first = rig.tech.read_until(BANNER)

    assert first == BANNER
    rig.tech.expect_nothing(0.3)


def test_typed_characters_are_echoed_by_default(make_shim):
    rig = make_shim()

    rig.tech.send(b"abc")
    assert rig.tech.read_exactly(3) == b"abc"
    rig.tech.send(b"\x7f")  # DEL erases the last character
    assert rig.tech.read_exactly(3) == b"\b \b"
    rig.tech.send(b"\r")
    assert rig.tech.read_until(FORMAT) == FORMAT


def test_unknown_user_bad_code_and_replay_get_identical_text(make_shim):
    rig = make_shim(gate={"echo": False, "backoff_initial": 0}, session={"idle_timeout": 1})
    alice = "alice@example.org"

    rig.tech.send(f"nobody@example.org {rig.code(alice)}\r".encode())
    unknown_user = rig.tech.read_until(b"\r\n> ")
    rig.tech.send(f"{alice} {rig.wrong_code(alice)}\r".encode())
    bad_code = rig.tech.read_until(b"\r\n> ")
    code = rig.code(alice)
    rig.login(alice, code)
    rig.tech.read_until(b"Session closed (idle_timeout).\r\n" + BANNER, timeout=5)
    rig.tech.send(f"{alice} {code}\r".encode())
    replay = rig.tech.read_until(b"\r\n> ")

    assert unknown_user == bad_code == replay == FAILURE
    log = rig.daemon.log_text()
    results = re.findall(r"auth failure technician=\S+ result=(\w+)", log)
    assert results == ["BAD_USER", "BAD_CODE", "REPLAY"]


def test_success_texts_with_a_code_from_oathtool(make_shim):
    rig = make_shim(gate={"echo": False})
    alice = "alice@example.org"
    secret = rig.totp(alice).secret
    code = subprocess.run(
        ["oathtool", "--totp", "-b", "-s", "10s", secret],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert re.fullmatch(r"\d{6}", code)

    rig.tech.send(f"{alice} {code}\r".encode())
    reply = rig.tech.read_until(b"Disconnect to end session.\r\n")

    match = SUCCESS.fullmatch(reply)
    assert match is not None, reply
    assert match["id"] == alice.encode()
    assert valid_session_id(match["sid"].decode())
    rig.tech.expect_nothing(0.2)
    assert f"session opened technician={alice}" in rig.daemon.log_text()


def test_unauthenticated_bytes_never_reach_the_device(make_shim):
    rig = make_shim(gate={"backoff_initial": 0})
    alice = "alice@example.org"
    attempts = [
        b"\r",
        b"hello\r",
        b"service vip3200 extra\r",
        b"status\r\n",
        b"log 100\n",
        f"{alice} {rig.wrong_code(alice)}\r".encode(),
        f"mallory@example.org {rig.code(alice)}\r\n".encode(),
        f"{alice} {rig.code(alice)}x\r".encode(),
        b"breakglass 123456\r",
        b"\x03\x1b[A\x1b[B\x04\x1a\r",
        f"{alice} {rig.code(alice)}\x03\r".encode(),  # Ctrl-C clears the line
        b"A" * 400 + b"\r",
        b"service\rvip3200\r",
        b"unterminated line with no end",
    ]
    for data in attempts:
        rig.tech.send(data)
    rig.tech.read_until(b"<totp_code>\r\n> unterminated line with no end")

    rig.dev.expect_nothing(0.5)
    assert rig.dev.received == b""
    # Control: once authenticated, the next bytes are the first the device
    # sees; any earlier leak would be queued ahead of them on the PTY.
    rig.tech.send(b"\x15")  # Ctrl-U drops the unterminated line
    rig.login("bob@example.org")
    rig.tech.send(b"first authorised bytes\r")
    rig.dev.read_until(b"first authorised bytes\r")
    assert rig.dev.received == b"first authorised bytes\r"


def test_bad_input_gets_only_clean_rejections(make_shim):
    rig = make_shim(gate={"echo": False, "backoff_initial": 0})
    cases = [
        (b"x" * 300 + b"\r", FORMAT),
        (b"alice@example.org\x00 123456\r", FORMAT),
        (b"\x00\x00\x00\r", FORMAT),
        (b"\xff\xfe\xc3( 123456\r", FORMAT),
        ("alice@example.org １２３４５６\r".encode(), FAILURE),
    ]
    for data, expected in cases:
        rig.tech.send(data)
        assert rig.tech.read_until(b"\r\n> ") == expected, data

    rng = random.Random(20261123)  # fixed seed: a failure can be replayed
    alphabet = bytes(b for b in range(256) if b not in (0x0A, 0x0D))
    lines = [bytes(rng.choices(alphabet, k=rng.randint(0, 200))) + b"\r" for _ in range(10_000)]
    rig.tech.send(b"".join(lines), timeout=60)
    replies = 0
    while replies < len(lines):
        reply = rig.tech.read_until(b"\r\n> ", timeout=30)
        assert reply in (FORMAT, FAILURE), f"reply {replies}: {reply!r}"
        replies += 1
    rig.tech.expect_nothing(0.2)

    assert rig.daemon.alive
    rig.tech.send(b"still there?\r")
    assert rig.tech.read_until(b"\r\n> ") == FAILURE
    rig.tech.send(b"\r")
    assert rig.tech.read_until(b"\r\n> ") == FORMAT
    assert rig.dev.received == b""
    rig.login("bob@example.org")
    rig.tech.send(b"after the flood\r")
    rig.dev.read_until(b"after the flood\r")
    assert rig.dev.received == b"after the flood\r"


def test_backoff_ignores_input_briefly_after_a_failure(make_shim):
    rig = make_shim(gate={"echo": False, "backoff_initial": 1})
    alice = "alice@example.org"
    rig.tech.send(f"{alice} {rig.wrong_code(alice)}\r".encode())
    assert rig.tech.read_until(b"\r\n> ") == FAILURE

    rig.tech.send(f"{alice} {rig.code(alice)}\r".encode())  # at once: ignored
    notice = rig.tech.read_until(b"\r\n> ")
    rig.tech.expect_nothing(1.1)  # outlast the 1 s backoff

    assert notice == b"\r\nToo many failed attempts: input ignored for 1 s.\r\n> "
    assert len(re.findall(r"auth failure", rig.daemon.log_text())) == 1
    rig.login(alice)
    assert rig.dev.received == b""


SEED_CONFIG = Path(__file__).resolve().parent.parent / "vectors" / "seed-config.example.yaml"


def test_the_seeds_example_config_runs_with_only_its_paths_changed(make_shim):
    rig = make_shim(start=False)
    text = SEED_CONFIG.read_text(encoding="utf-8")
    for old, new in (
        ('"/tmp/shim-tech"', json.dumps(str(rig.tech_link))),
        ('"/tmp/shim-dev"', json.dumps(str(rig.dev_link))),
        ('"/var/lib/shim"', json.dumps(str(rig.storage))),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    rig.config.write_text(text, encoding="utf-8")
    rig.start()

    # The seed's 80-bit secret is too short for pyotp; Debian's oathtool takes it.
    code = subprocess.run(
        ["oathtool", "--totp", "-b", "JBSWY3DPEHPK3PXP"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rig.login("alice@example.org", code)
    rig.tech.send(b"status\r")
    rig.dev.read_until(b"status\r")

    assert rig.dev.received == b"status\r"
    log = rig.daemon.log_text()
    assert "shim-empump-001" in log
    assert "JBSWY3DPEHPK3PXP" not in log
