"""The shim's keys (`shimmfa.shim.state.keys`): created once, private (directory
0700, files 0600), never overwritten; a key file or directory others can
read stops the shim with the chmod that fixes it. Public halves are checked
against the files with `cryptography` and Debian's `age-keygen`."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shimmfa.errors import KeyFileError
from shimmfa.shim.state.keys import (
    init_keys,
    load_keys,
    local_recording_recipient,
    parse_recipient,
    read_age_identity,
)

FILES = ("signing.pem", "shim.agekey")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_a_private_directory_and_private_files(tmp_path: Path) -> None:
    keys, created = init_keys(tmp_path / "storage")
    directory = tmp_path / "storage" / "keys"
    assert sorted(created) == sorted(FILES)
    assert keys.directory == directory
    assert mode(directory) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)
    for name in FILES:
        assert mode(directory / name) == 0o600


def test_init_never_overwrites(tmp_path: Path) -> None:
    first, _ = init_keys(tmp_path)
    before = {name: (tmp_path / "keys" / name).read_bytes() for name in FILES}
    again, created = init_keys(tmp_path)
    assert created == []
    assert {name: (tmp_path / "keys" / name).read_bytes() for name in FILES} == before
    assert again.public_key_text == first.public_key_text
    assert again.recipient == first.recipient


def test_init_creates_only_what_is_missing(tmp_path: Path) -> None:
    init_keys(tmp_path)
    signing = (tmp_path / "keys" / "signing.pem").read_bytes()
    (tmp_path / "keys" / "shim.agekey").unlink()
    _, created = init_keys(tmp_path)
    assert created == ["shim.agekey"]
    assert (tmp_path / "keys" / "signing.pem").read_bytes() == signing


def test_public_key_text_is_the_pem_keys_raw_public_half(tmp_path: Path) -> None:
    keys, _ = init_keys(tmp_path)
    private = serialization.load_pem_private_key(
        (tmp_path / "keys" / "signing.pem").read_bytes(), password=None
    )
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    prefix, _, encoded = keys.public_key_text.partition(":")
    assert prefix == "ed25519"
    assert base64.b64decode(encoded, validate=True) == raw
    assert keys.public_key_raw == raw
    private.public_key().verify(keys.sign(b"heartbeat"), b"heartbeat")


@pytest.mark.skipif(shutil.which("age-keygen") is None, reason="Debian's age is not installed")
def test_the_age_identity_is_in_age_keygen_format(tmp_path: Path) -> None:
    keys, _ = init_keys(tmp_path)
    derived = subprocess.run(
        ["age-keygen", "-y", str(tmp_path / "keys" / "shim.agekey")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert derived == keys.recipient and derived.startswith("age1")


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_key_file_others_can_use_is_refused_with_the_fix(
    tmp_path: Path, name: str, loose: int
) -> None:
    init_keys(tmp_path)
    path = tmp_path / "keys" / name
    path.chmod(loose)
    with pytest.raises(KeyFileError) as caught:
        load_keys(tmp_path)
    message = str(caught.value)
    assert f"chmod 600 {path}" in message
    assert f"{loose:o}" in message and "refuses to start" in message
    with pytest.raises(KeyFileError):
        init_keys(tmp_path)  # init does not quietly repair it either
    path.chmod(0o600)
    load_keys(tmp_path)


@pytest.mark.parametrize("loose", [0o755, 0o750, 0o705, 0o770])
def test_a_key_directory_others_can_use_is_refused_with_the_fix(tmp_path: Path, loose: int) -> None:
    init_keys(tmp_path)
    directory = tmp_path / "keys"
    directory.chmod(loose)
    with pytest.raises(KeyFileError, match=f"chmod 700 {directory}"):
        load_keys(tmp_path)
    directory.chmod(0o700)
    load_keys(tmp_path)


def test_missing_keys_name_the_command_that_creates_them(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="shimmfa keys init"):
        load_keys(tmp_path)
    init_keys(tmp_path)
    (tmp_path / "keys" / "signing.pem").unlink()
    with pytest.raises(KeyFileError, match="signing.pem is missing"):
        load_keys(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("signing.pem", b"not a pem", "not a readable PEM"),
        ("shim.agekey", b"# nothing here\n", "AGE-SECRET-KEY-1"),
        ("shim.agekey", b"AGE-SECRET-KEY-1NOTVALID\n", "not a valid age"),
        ("shim.agekey", b"\xff\xfe", "cannot read"),
    ],
)
def test_malformed_key_files_are_refused(
    tmp_path: Path, name: str, content: bytes, match: str
) -> None:
    init_keys(tmp_path)
    (tmp_path / "keys" / name).write_bytes(content)
    with pytest.raises(KeyFileError, match=match):
        load_keys(tmp_path)


def test_a_signing_key_of_another_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    init_keys(tmp_path)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "keys" / "signing.pem").write_bytes(pem)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_keys(tmp_path)


def test_the_local_recording_identity_is_made_once_and_may_leave(tmp_path: Path) -> None:
    recipient, secret_here = local_recording_recipient(tmp_path)
    assert secret_here and recipient.startswith("age1")
    secret = tmp_path / "keys" / "recording.agekey"
    assert mode(secret) == 0o600
    assert mode(tmp_path / "keys" / "recording.recipient") == 0o600
    assert str(read_age_identity(secret).to_public()) == recipient
    assert local_recording_recipient(tmp_path) == (recipient, True)
    secret.unlink()
    assert local_recording_recipient(tmp_path) == (recipient, False)
    assert not secret.exists()


def test_a_local_recording_identity_others_can_read_is_refused(tmp_path: Path) -> None:
    local_recording_recipient(tmp_path)
    secret = tmp_path / "keys" / "recording.agekey"
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {secret}"):
        local_recording_recipient(tmp_path)


@pytest.mark.parametrize("text", ["", "age1", "ssh-ed25519 AAAA", "AGE-SECRET-KEY-1QQQ", "age1 x"])
def test_parse_recipient_refuses_what_is_not_an_x25519_recipient(text: str) -> None:
    with pytest.raises(KeyFileError, match="age1"):
        parse_recipient(text)
