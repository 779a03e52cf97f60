"""The dealer's commands as a person runs them: `shimmfa quorum keygen`
and `deal` (farMFA's messages, the secret never on the command line, one
recipient one Toc, AND across groups) and `register`; the Tocs it writes
open with Debian's `age`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from quorum.kit import SECRET, age_decrypt, age_keygen, needs_age, shimmfa
from shimmfa.central.db import open_engine
from shimmfa.core.toc import combine_tocs, parse_toc
from shimmfa.core.toc_deal import combine_groups
from shimmfa.quorum.age_tocs import new_identity, open_toc, read_identity_file
from shimmfa.quorum.dealing import dealt_groups
from shimmfa.quorum.store_sql import SqlGroupRegistry

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Identity files NAME.key made by `shimmfa quorum keygen`."""
    directory = tmp_path_factory.mktemp("keys")
    for name in ("ann", "bob", "cat", "ivan", "ines"):
        done = shimmfa("quorum", "keygen", "-o", directory / f"{name}.key")
        assert done.returncode == 0, done.stderr
        (directory / f"{name}.pub").write_text(done.stdout.strip())
    return directory


@pytest.fixture
def holders(keys: Path) -> dict[str, str]:
    """name -> recipient of the identity in `keys`."""
    return {path.stem: path.read_text() for path in keys.glob("*.pub")}


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def test_keygen_writes_a_private_identity_and_prints_its_recipient(tmp_path: Path) -> None:
    done = shimmfa("quorum", "keygen", "-o", key := tmp_path / "holder.key")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (identity,) = read_identity_file(key)
    assert done.stdout.strip() == str(identity.to_public())
    assert str(identity) not in done.stdout + done.stderr
    again = shimmfa("quorum", "keygen", "-o", key)
    assert again.returncode == 1 and "exists" in again.stderr
    printed = shimmfa("quorum", "keygen")  # like age-keygen: the identity on stdout
    assert "AGE-SECRET-KEY-1" in printed.stdout and "public key: age1" in printed.stderr


@needs_age
def test_keygen_identities_work_with_debians_age(tmp_path: Path) -> None:
    recipient = shimmfa("quorum", "keygen", "-o", key := tmp_path / "k").stdout.strip()
    import subprocess

    derived = subprocess.run(["age-keygen", "-y", str(key)], capture_output=True, text=True)
    assert derived.stdout.strip() == recipient


@needs_age
def test_a_deal_gives_each_player_a_toc_that_debians_age_opens(
    tmp_path: Path, secret_file: Path
) -> None:
    recipients = {name: age_keygen(tmp_path / f"{name}.agekey") for name in ("p1", "p2", "p3")}
    players = [arg for name, r in recipients.items() for arg in ("--player", f"{name}={r}")]
    done = shimmfa(
        "quorum", "deal", "--secret-file", secret_file, *players, "--threshold", "2",
        "--note", "pump 7 <ward B>",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert list(document) == ["group_id", "threshold", "size", "note", "tocs"]
    assert (document["threshold"], document["size"], document["note"]) == (2, 3, "pump 7 <ward B>")
    tocs = []
    for name in recipients:
        opened = age_decrypt(document["tocs"][name], tmp_path / f"{name}.agekey")
        assert opened.returncode == 0, opened.stderr
        tocs.append(toc := parse_toc(opened.stdout))
        assert (toc.group_id, toc.group_size, toc.group_threshold) == (document["group_id"], 3, 2)
        assert "\\u003c" in opened.stdout  # Go's escapes, as farMFA writes the note
    assert combine_tocs(tocs[1:]) == SECRET
    assert SECRET not in done.stdout + done.stderr


def test_the_secret_comes_from_stdin_too(holders: dict[str, str]) -> None:
    done = shimmfa(
        "quorum", "deal", "--secret-file", "-", "-p", f"ann={holders['ann']}",
        "-p", f"bob={holders['bob']}", "-t", "2", stdin="hxdm vjec jjws rb3h wizr 4ifu gftm xboz\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["tocs"]) == 2


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        ("1", "threshold cannot be lower than 2"),
        ("0", "threshold cannot be lower than 2"),
        ("4", "threshold cannot be higher than the number of players"),
    ],
)
def test_farmfas_dealer_messages(
    holders: dict[str, str], secret_file: Path, threshold: str, message: str
) -> None:
    players = [f"--player={n}={holders[n]}" for n in ("ann", "bob", "cat")]
    done = shimmfa("quorum", "deal", "--secret-file", secret_file, *players, "-t", threshold)
    assert done.returncode == 1 and done.stderr.strip() == f"shimmfa: {message}"


@pytest.mark.parametrize("bad", ["not!base32", "JBSWY3DPEHPK3PX1", "A"])
def test_an_invalid_totp_secret_is_refused_without_being_shown(
    holders: dict[str, str], tmp_path: Path, bad: str
) -> None:
    (path := tmp_path / "bad.txt").write_text(bad)
    path.chmod(0o600)
    players = [f"--player=ann={holders['ann']}", f"--player=bob={holders['bob']}"]
    done = shimmfa("quorum", "deal", "--secret-file", path, *players, "-t", "2")
    assert done.returncode == 1 and "invalid TOTP secret" in done.stderr
    assert bad.upper() not in done.stderr.replace("shimmfa:", "")


@pytest.mark.parametrize("option", ["--secret", "--totp-secret", "-s"])
def test_the_secret_is_never_taken_from_the_command_line(
    holders: dict[str, str], option: str
) -> None:
    players = [f"--player=ann={holders['ann']}", f"--player=bob={holders['bob']}"]
    done = shimmfa("quorum", "deal", option, SECRET, *players, "-t", "2")
    assert done.returncode == 2 and "No such option" in done.stderr
    positional = shimmfa("quorum", "deal", SECRET, "--secret-file", "-", *players, "-t", "2")
    assert positional.returncode == 2 and positional.stdout == ""


def test_a_secret_typed_as_the_file_name_is_not_echoed(holders: dict[str, str]) -> None:
    players = [f"--player=ann={holders['ann']}", f"--player=bob={holders['bob']}"]
    done = shimmfa("quorum", "deal", "--secret-file", SECRET, *players, "-t", "2")
    assert done.returncode == 1 and "no such file" in done.stderr
    assert SECRET not in done.stderr


def test_a_secret_file_others_can_read_is_warned_about(
    holders: dict[str, str], secret_file: Path
) -> None:
    secret_file.chmod(0o644)
    players = [f"--player=ann={holders['ann']}", f"--player=bob={holders['bob']}"]
    done = shimmfa("quorum", "deal", "--secret-file", secret_file, *players, "-t", "2")
    assert done.returncode == 0 and "readable by others" in done.stderr


def test_one_recipient_gets_one_toc(holders: dict[str, str], secret_file: Path) -> None:
    same = holders["ann"]
    done = shimmfa(
        "quorum", "deal", "--secret-file", secret_file, "-p", f"ann={same}", "-p", f"anne={same}",
        "-p", f"bob={holders['bob']}", "-t", "2",
    )  # fmt: skip
    assert done.returncode == 1 and "same recipient" in done.stderr
    across = shimmfa(
        "quorum", "deal", "--secret-file", secret_file, "-g", "clinical:1", "-g", "infosec:1",
        "-p", f"clinical/ann={same}", "-p", f"infosec/ann2={same}",
    )  # fmt: skip
    assert across.returncode == 1 and "count for two groups" in across.stderr


def and_args(holders: dict[str, str], secret_file: Path) -> list[str | Path]:
    return [
        "quorum", "deal", "--secret-file", secret_file,
        "--group", "clinical:2", "--group", "infosec:1",
        "--player", f"clinical/ann={holders['ann']}", "--player", f"clinical/bob={holders['bob']}",
        "--player", f"clinical/cat={holders['cat']}", "--player", f"infosec/ivan={holders['ivan']}",
        "--player", f"infosec/ines={holders['ines']}",
    ]  # fmt: skip


def test_an_and_deal_lists_every_group_and_every_toc(
    holders: dict[str, str], secret_file: Path, tmp_path: Path, keys: Path
) -> None:
    done = shimmfa(*and_args(holders, secret_file), "-o", out := tmp_path / "deal.json")
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert list(document) == ["groups", "note", "tocs"]
    assert {k: (v["threshold"], v["size"]) for k, v in document["groups"].items()} == {
        "clinical": (2, 3),
        "infosec": (1, 2),
    }
    assert sorted(document["tocs"]) == [
        "clinical/ann", "clinical/bob", "clinical/cat", "infosec/ines", "infosec/ivan",
    ]  # fmt: skip
    tocs = {
        name: open_toc(sealed, read_identity_file(keys / f"{name.split('/')[1]}.key"))
        for name, sealed in document["tocs"].items()
    }
    record = dealt_groups(document)
    assert set(record) == {toc.group for toc in tocs.values()}
    assert (
        combine_groups([tocs["clinical/ann"], tocs["clinical/cat"], tocs["infosec/ines"]], record)
        == SECRET
    )  # noqa: E501


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--threshold", "2"], "--threshold is for one group"),
        (["--player", "nurse=age1xyz"], "not an age X25519 recipient"),
        (["--player", "nurse=age1" + "q" * 58], "not a valid age recipient"),
        (["--group", "legal:1"], "group legal has no player"),
        (["--group", "clinical:9"], "threshold cannot be higher than the number of players"),
        (["--player", "legal/lou=RECIPIENT"], "one of the groups given by --group"),
        (["--group", "bad name:1"], "write NAME:THRESHOLD"),
    ],
)
def test_and_deal_refusals(
    holders: dict[str, str], secret_file: Path, change: list[str], message: str
) -> None:
    args = and_args(holders, secret_file)
    if change[0] == "--group" and change[1].startswith("clinical"):
        args[args.index("clinical:2")] = change[1]
    else:
        fresh = str(new_identity().to_public())
        args += [c.replace("RECIPIENT", fresh) for c in change]
    done = shimmfa(*args)
    assert done.returncode in (1, 2) and message in done.stderr, done.stderr


def test_register_records_a_deal_for_the_oracle(
    holders: dict[str, str], secret_file: Path, tmp_path: Path
) -> None:
    shimmfa(*and_args(holders, secret_file), "-o", out := tmp_path / "deal.json")
    url = f"sqlite:///{tmp_path / 'oracle.db'}"
    done = shimmfa("quorum", "register", out, "--database-url", url)
    assert done.returncode == 0, done.stderr
    record = dealt_groups(json.loads(out.read_text()))
    engine = open_engine(url)
    try:
        assert set(SqlGroupRegistry(engine).deal_of(record[0].group_id) or ()) == set(record)
    finally:
        engine.dispose()
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"hello": 1}')
    refused = shimmfa("quorum", "register", garbage, "--database-url", url)
    assert refused.returncode == 1 and "not a dealer's output" in refused.stderr
