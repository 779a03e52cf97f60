"""Configuration (`shimmfa.shim.config`): the seed prototype's example file
loads unchanged; every mistake is one line naming the key, from
`load_config` and from the real `shimmfa config check`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shimmfa.core.totp import AuthResult, TotpGate
from shimmfa.errors import ConfigError
from shimmfa.shim.config import (
    LoadedConfig,
    load_config,
    parse_settings,
    reference_table,
    type_name,
)
from shimmfa.shim.settings import Settings

TESTS = Path(__file__).resolve().parents[1]
SEED = TESTS / "vectors" / "seed-config.example.yaml"
SEED_TEXT = SEED.read_text(encoding="utf-8")
README = TESTS.parent / "README.md"
SHIMMFA = Path(sys.executable).with_name("shimmfa")
SEED_SECRETS = ("JBSWY3DPEHPK3PXP", "JFAVAU2GMUKDOMRX")


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit_seed(old: str, new: str) -> str:
    assert SEED_TEXT.count(old) == 1, old
    return SEED_TEXT.replace(old, new)


def minimal(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "shim": {"id": "shim-test"},
        "serial": {"technician_side_path": "/tmp/t", "device_side_path": "/tmp/d"},
        "storage": {"root": "/tmp/r"},
    }
    data.update(sections)
    return data


def check_cli(path: Path) -> subprocess.CompletedProcess[str]:
    assert SHIMMFA.exists(), f"the shimmfa script is not installed next to {sys.executable}"
    return subprocess.run(
        [str(SHIMMFA), "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- the seed's example file ------------------------------------------------------------


def test_seed_vector_is_the_published_file() -> None:
    # Guards the vector itself: the published file, byte for byte.
    assert SEED_TEXT.startswith("# Pattern C MFA Shim — example configuration\n")
    assert len(SEED_TEXT) == 2340
    assert SEED_TEXT.endswith('    notes: "In-house clinical engineering"\n')


def test_seed_config_loads_with_the_seed_values() -> None:
    loaded = load_config(SEED)
    s = loaded.settings
    assert s.shim.id == "shim-empump-001"
    assert s.shim.description == "ICU bay 4A — ExampleMed Volumetric Infusion Pump v3.2"
    assert s.serial.technician_side_path == "/tmp/shim-tech"
    assert s.serial.device_side_path == "/tmp/shim-dev"
    assert s.serial.baudrate == 9600
    assert (s.totp.period, s.totp.digits, s.totp.window) == (30, 6, 1)
    assert (s.totp.max_failures, s.totp.lockout_seconds) == (5, 300)
    assert s.storage.root == "/var/lib/shim"
    assert s.tamper.heartbeat_period == 60.0
    assert s.siem.transport == "noop"
    records = s.technician_records()
    assert list(records) == ["alice@example.org", "bob@example.org"]
    alice, bob = records["alice@example.org"], records["bob@example.org"]
    assert alice.totp_secret == SEED_SECRETS[0]
    assert alice.enrolment_date == "2026-04-01"
    assert alice.notes == "Vendor service technician — ExampleMed Inc. contract 2024-2026"
    assert bob.totp_secret == SEED_SECRETS[1]
    assert bob.enrolment_date == "2026-04-15"
    assert bob.notes == "In-house clinical engineering"


def test_seed_config_gets_defaults_for_our_new_sections() -> None:
    s = load_config(SEED).settings
    assert s.session.idle_timeout == 900
    assert s.gate.echo is True
    assert s.gate.max_line == 256
    assert s.gate.backoff_initial == 1
    assert s.gate.backoff_max == 60
    assert s.totp.algorithm == "SHA1"


def test_seed_technician_can_log_in_with_the_80_bit_secret() -> None:
    # With pyotp >= 2.11 the seed's own config crashed at the first login.
    s = load_config(SEED).settings
    gate = TotpGate(
        s.technician_records(),
        time_source=lambda: 59.0,
        period=s.totp.period,
        digits=s.totp.digits,
        window=s.totp.window,
    )
    # oathtool --totp -b -N @59 JBSWY3DPEHPK3PXP
    assert gate.authenticate("alice@example.org", "996554").result is AuthResult.OK


def test_seed_config_warns_loudly_about_the_demo_secret() -> None:
    warnings = load_config(SEED).warnings
    loud = [w for w in warnings if "alice@example.org" in w and "DANGER" in w]
    assert len(loud) == 1


def test_seed_config_warns_about_each_plaintext_secret() -> None:
    warnings = load_config(SEED).warnings
    for technician in ("alice@example.org", "bob@example.org"):
        assert any(technician in w and "plaintext" in w for w in warnings), technician


def test_no_warning_contains_secret_text() -> None:
    warnings = load_config(SEED).warnings
    assert warnings
    for warning in warnings:
        for secret in SEED_SECRETS:
            assert secret not in warning.upper()


def test_new_secret_in_the_file_warns_as_plaintext_but_not_as_danger(tmp_path: Path) -> None:
    secret = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"  # noqa: S105 - test secret
    data = minimal(technicians=[{"technician_id": "carol@example.org", "totp_secret": secret}])
    warnings = load_config(write(tmp_path, yaml.safe_dump(data))).warnings
    assert any("carol@example.org" in w and "plaintext" in w for w in warnings)
    assert not any("DANGER" in w for w in warnings)
    assert not any(secret in w for w in warnings)


def test_short_secret_warning_names_its_size(tmp_path: Path) -> None:
    data = minimal(technicians=[{"technician_id": "dave", "totp_secret": "MFRGGZDFMZTWQ2LK"}])
    warnings = load_config(write(tmp_path, yaml.safe_dump(data))).warnings
    assert any("dave" in w and "80-bit" in w for w in warnings)
    assert not any("MFRGGZDFMZTWQ2LK" in w for w in warnings)


def test_cli_check_of_the_seed_passes_and_keeps_secrets_out_of_its_output() -> None:
    result = check_cli(SEED)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "alice@example.org" in result.stderr
    for secret in SEED_SECRETS:
        assert secret not in result.stdout + result.stderr


def test_unquoted_yaml_date_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, edit_seed('enrolment_date: "2026-04-01"', "enrolment_date: 2026-04-01"))
    assert load_config(path).settings.technicians[0].enrolment_date == "2026-04-01"


# -- errors: one line naming the key, from load_config and the CLI -------------------------

ERRORS: list[tuple[str, Callable[[], str], str]] = [
    ("unknown key", lambda: edit_seed("  window: 1 ", "  windw: 1 "), "totp.windw"),
    ("wrong type", lambda: edit_seed("period: 30", 'period: "thirty"'), "totp.period"),
    (
        "bad base32",
        lambda: edit_seed('"JBSWY3DPEHPK3PXP"', '"JBSWY3DPEHPK3PX!"'),
        "technicians[0].totp_secret",
    ),
    (
        "duplicate technician",
        lambda: edit_seed('"bob@example.org"', '"alice@example.org"'),
        "alice@example.org",
    ),
    (
        "missing required key",
        lambda: edit_seed('  device_side_path: "/tmp/shim-dev"\n', ""),
        "serial.device_side_path",
    ),
    (
        "duplicate YAML key",
        lambda: edit_seed("  digits: 6\n", "  digits: 6\n  digits: 8\n"),
        "digits",
    ),
    ("window above 3", lambda: edit_seed("  window: 1 ", "  window: 4 "), "totp.window"),
    ("non-mapping top level", lambda: "- shim\n- serial\n", "mapping"),
    ("empty file", lambda: "", "empty"),
    ("only comments", lambda: "# nothing here\n", "empty"),
]


@pytest.mark.parametrize(("text", "key"), [pytest.param(t, k, id=n) for n, t, k in ERRORS])
def test_load_config_error_is_one_line_naming_the_key(
    tmp_path: Path, text: Callable[[], str], key: str
) -> None:
    path = write(tmp_path, text())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert key in message
    assert str(path) in message


@pytest.mark.parametrize(("text", "key"), [pytest.param(t, k, id=n) for n, t, k in ERRORS])
def test_cli_config_check_error_is_exit_2_and_one_line(
    tmp_path: Path, text: Callable[[], str], key: str
) -> None:
    result = check_cli(write(tmp_path, text()))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr


def test_duplicate_yaml_key_names_its_line(tmp_path: Path) -> None:
    text = edit_seed("  digits: 6\n", "  digits: 6\n  digits: 8\n")
    line = text.splitlines().index("  digits: 8") + 1
    with pytest.raises(ConfigError, match=rf"line {line}\b"):
        load_config(write(tmp_path, text))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = edit_seed('  id: "shim-empump-001"\n', '  id: "shim-empump-001\n')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert len(message.splitlines()) == 1
    found = re.search(r"line (\d+)", message)
    assert found, message
    # The unterminated string starts on line 7; the parser notices on a later line.
    assert int(found.group(1)) >= 7


def test_cli_names_the_line_of_a_yaml_syntax_error(tmp_path: Path) -> None:
    result = check_cli(write(tmp_path, "shim:\n  id: [unclosed\nserial: {}\n"))
    assert result.returncode == 2
    assert re.search(r"line \d+", result.stderr)
    assert len(result.stderr.splitlines()) == 1


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.yaml")


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("shim: {id: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


@pytest.mark.parametrize("window", [0, 3])
def test_window_up_to_3_is_accepted(window: int) -> None:
    assert parse_settings(minimal(totp={"window": window})).totp.window == window


def test_yaml_booleans_are_not_integers() -> None:
    with pytest.raises(ConfigError, match=r"serial\.baudrate"):
        parse_settings(
            minimal(serial={"technician_side_path": "a", "device_side_path": "b", "baudrate": True})
        )


@pytest.mark.parametrize("tid", ["alice example", "tab\there", "", "x" * 129, "nul\x00"])
def test_technician_ids_that_cannot_be_typed_at_the_gate_are_refused(tid: str) -> None:
    data = minimal(technicians=[{"technician_id": tid, "totp_secret": "JFAVAU2GMUKDOMRX"}])
    with pytest.raises(ConfigError, match=r"technicians\[0\]\.technician_id"):
        parse_settings(data)


# -- property: any document is a Settings or a ConfigError ---------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "shim",
                    "serial",
                    "totp",
                    "storage",
                    "technicians",
                    "id",
                    "window",
                    "root",
                    "technician_id",
                    "totp_secret",
                    "gate",
                    "session",
                    "period",
                    "digits",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


def _mutated_seed() -> st.SearchStrategy[str]:
    lines = SEED_TEXT.splitlines(keepends=True)
    return st.builds(
        lambda index, junk: "".join(lines[:index] + [junk] + lines[index + 1 :]),
        st.integers(0, len(lines) - 1),
        st.text(max_size=40),
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "config.yaml"


def _load_or_config_error(path: Path) -> LoadedConfig | None:
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        assert str(exc)
        return None
    assert isinstance(loaded.settings, Settings)
    return loaded


@given(text=st.one_of(st.text(max_size=300), _mutated_seed()))
@example(text="? [a]\n: b\n")
@example(text="{[a]: b}\n")
@example(text="{{a: 1}: b}\n")
@example(text="a: !!timestamp 2020-13-45\n")
@example(text="a: !!int 0x\n")
@example(text="a: !!float xyz\n")
@example(text="a: " + "[" * 5000 + "]" * 5000)
@example(text="<<: {a: 1}\n")
@example(text="shim: &x {id: *x}\n")
@example(text="!!python/object/apply:os.system [echo]\n")
@settings(max_examples=300, deadline=None)
def test_any_text_loads_as_settings_or_config_error(scratch: Path, text: str) -> None:
    scratch.write_text(text, encoding="utf-8")
    _load_or_config_error(scratch)


@given(raw=st.binary(max_size=200))
@settings(max_examples=100, deadline=None)
def test_any_bytes_load_as_settings_or_config_error(scratch: Path, raw: bytes) -> None:
    scratch.write_bytes(raw)
    _load_or_config_error(scratch)


@given(document=documents)
@settings(max_examples=300, deadline=None)
def test_any_yaml_document_loads_as_settings_or_config_error(scratch: Path, document: Any) -> None:
    scratch.write_text(yaml.safe_dump(document), encoding="utf-8")
    _load_or_config_error(scratch)


@given(document=documents)
@settings(max_examples=200)
def test_any_parsed_data_is_settings_or_config_error(document: Any) -> None:
    try:
        settings_ = parse_settings(document)
    except ConfigError:
        return
    assert isinstance(settings_, Settings)


# -- the settings table and the README ------------------------------------------------------


def test_readme_configuration_reference_matches_the_settings_table() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, "README lacks the reference markers"
    documented = text.split(start, 1)[1].split(end, 1)[0]
    assert documented.strip() == reference_table().strip(), (
        "README's configuration reference is stale: paste `shimmfa config reference` "
        "between the markers"
    )


def test_settings_table_lists_every_key_of_the_seed_file() -> None:
    table = reference_table()
    seed = yaml.safe_load(SEED_TEXT)
    for section, values in seed.items():
        if section == "technicians":
            for key in values[0]:
                assert f"`technicians[].{key}`" in table
            continue
        for key in values:
            assert f"`{section}.{key}`" in table


# -- siem ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "siem",
    [
        {"transport": "noop"},
        {"transport": "file", "path": "/var/log/shim-events.jsonl"},
        {"transport": "syslog", "endpoint": "tls://siem.example.org:6514"},
        {"transport": "syslog", "endpoint": "tcp://10.0.0.5:514", "format": "cef"},
        {
            "transport": "syslog",
            "endpoint": "tls://siem.example.org:6514",
            "ca_file": "/etc/shim/ca.pem",
            "client_cert": "/etc/shim/client.crt",
            "client_key": "/etc/shim/client.key",
            "outbox_max": 5000,
        },
        {"transport": "https", "endpoint": "https://siem.example.org/ingest"},
    ],
)
def test_consistent_siem_settings_load(siem: dict[str, Any]) -> None:
    loaded = parse_settings(minimal(siem=siem)).siem
    assert loaded.model_dump(exclude_defaults=True) == {
        k: v for k, v in siem.items() if k != "transport"
    } | ({"transport": siem["transport"]} if siem["transport"] != "noop" else {})


def test_the_seeds_commented_https_siem_keys_load_when_uncommented(tmp_path: Path) -> None:
    text = edit_seed('  transport: "noop"\n  # transport: "https"\n', '  transport: "https"\n')
    for key in ("endpoint", "client_cert", "client_key"):
        text = text.replace(f"  # {key}:", f"  {key}:")
    siem = load_config(write(tmp_path, text)).settings.siem
    assert (siem.transport, siem.endpoint) == ("https", "https://siem.example.org/ingest")
    assert (siem.client_cert, siem.client_key) == ("/etc/shim/client.crt", "/etc/shim/client.key")


@pytest.mark.parametrize(
    ("siem", "key"),
    [
        ({"transport": "syslog"}, "siem.endpoint"),
        ({"transport": "https"}, "siem.endpoint"),
        ({"transport": "file"}, "siem.path"),
        ({"transport": "syslog", "endpoint": "udp://siem:514"}, "siem.endpoint"),
        ({"transport": "syslog", "endpoint": "https://siem:514"}, "siem.endpoint"),
        ({"transport": "https", "endpoint": "http://siem/ingest"}, "siem.endpoint"),
        ({"transport": "syslog", "endpoint": "tls://siem"}, "siem.endpoint"),
        ({"transport": "syslog", "endpoint": "tls://siem:99999"}, "siem.endpoint"),
        ({"transport": "https", "endpoint": "https://u:pw@siem/x"}, "siem.endpoint"),
        ({"transport": "noop", "client_cert": "/c.pem"}, "siem.client_key"),
        ({"transport": "https", "endpoint": "https://s/x", "client_key": "/k"}, "siem.client_cert"),
        ({"transport": "syslog", "endpoint": "tcp://s:514", "ca_file": "/ca"}, "siem.ca_file"),
        ({"transport": "kafka"}, "siem.transport"),
        ({"transport": "syslog", "endpoint": "tls://s:1", "format": "leef"}, "siem.format"),
        ({"outbox_max": 10}, "siem.outbox_max"),
        ({"transport": "noop", "token": "x"}, "siem.token"),
    ],
)
def test_inconsistent_siem_settings_are_one_error_naming_the_key(
    siem: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(minimal(siem=siem))
    message = str(caught.value)
    assert key in message, message
    assert "pw" not in message  # no credential is repeated back


@pytest.mark.parametrize(
    ("annotation", "shown"),
    [
        (int, "int"),
        (str | None, "str or None"),
        (Literal["N", "E"], "one of 'N', 'E'"),
        (Literal["admin"], "'admin'"),
        (Optional[Literal[6, 8]], "one of 6, 8 or None"),  # noqa: UP045 - the Optional form itself
        (list[str], "list of str"),
        (list[Annotated[int | str, "meta"]], "list of (int or str)"),
    ],
)
def test_the_reference_names_types_plainly(annotation: object, shown: str) -> None:
    assert type_name(annotation) == shown
