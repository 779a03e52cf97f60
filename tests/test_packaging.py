"""The systemd unit in packaging/: the settings the daemon relies on and the
hardening we promise, read by a small unit-file parser here, then checked by
`systemd-analyze verify` and `systemd-analyze security --offline` when
systemd's tools are installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).parents[1] / "packaging"
UNIT = PACKAGING / "shimmfa.service"
SHIMMFA = Path(sys.executable).with_name("shimmfa")
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (keys like DeviceAllow= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {number}: no continuation lines, please"
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            assert header.group(1) not in sections, f"line {number}: section repeated"
            current = sections[header.group(1)] = {}
            continue
        assert current is not None, f"line {number}: setting outside a section"
        key, equals, value = line.partition("=")
        assert equals and re.fullmatch(r"[A-Za-z]+", key.strip()), f"line {number}: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    return unit["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key)
    assert values is not None, f"{key}= is missing"
    assert len(values) == 1, f"{key}= is set {len(values)} times"
    return values[0]


def test_the_parser_reads_repeats_and_refuses_nonsense() -> None:
    parsed = parse_unit("[Service]\n# c\nA=1\nA=2\nB=\n")
    assert parsed == {"Service": {"A": ["1", "2"], "B": [""]}}
    for bad in ("A=1\n", "[Service]\nno equals\n", "[Service]\nA=1 \\\n"):
        with pytest.raises(AssertionError):
            parse_unit(bad)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "10"),
        ("Restart", "on-failure"),
        ("ExecStart", "/usr/bin/shimmfa run --config /etc/shimmfa/config.yaml"),
        ("User", "shimmfa"),
        ("SupplementaryGroups", "dialout"),
        ("StateDirectory", "shimmfa"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/shimmfa"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
        ("DevicePolicy", "closed"),
    ],
)
def test_the_service_sets(service: dict[str, list[str]], key: str, value: str) -> None:
    assert one(service, key) == value


def test_system_calls_are_limited_to_system_service(service: dict[str, list[str]]) -> None:
    filters = service["SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert filters[1] == "~@privileged @resources"
    # Narrowed only, but for the one call of @resources the daemon makes:
    # without it, moving the recorder to SCHED_IDLE would kill the daemon.
    assert filters[2:] == ["sched_setscheduler"]


def test_exactly_two_serial_ports_are_allowed(service: dict[str, list[str]]) -> None:
    allowed = service["DeviceAllow"]
    assert len(allowed) == 2
    paths = [entry.split()[0] for entry in allowed]
    assert all(entry.split()[1:] == ["rw"] for entry in allowed)
    assert all(re.fullmatch(r"/dev/tty[A-Za-z]+[0-9]+", path) for path in paths)
    assert len(set(paths)) == 2
    text = UNIT.read_text(encoding="utf-8")
    comment = text[: text.index("\nDeviceAllow=")].rsplit("\n\n", 1)[-1]
    assert "EDIT" in comment  # the lines to change are marked


def test_the_unit_runs_a_command_that_exists() -> None:
    """`shimmfa run --config FILE` as ExecStart says."""
    assert SHIMMFA.exists(), f"the shimmfa script is not installed next to {sys.executable}"
    shown = subprocess.run(
        [str(SHIMMFA), "run", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "--config" in shown


def test_the_readme_covers_the_lines_to_edit() -> None:
    readme = (PACKAGING / "README.md").read_text(encoding="utf-8")
    for needed in ("DeviceAllow=", "ExecStart=", "dialout", "storage.root", "/var/lib/shimmfa"):
        assert needed in readme
    assert "packaging/shimmfa.service" in readme


def local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's shimmfa, the
    one thing `verify` checks on the host."""
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/usr/bin/shimmfa ") == 1
    copy = tmp_path / "shimmfa.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/shimmfa ", f"ExecStart={SHIMMFA} "))
    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [line for line in result.stderr.splitlines() if "shimmfa.service" in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


@needs_systemd_analyze
def test_systemd_analyze_verify_would_complain(tmp_path: Path) -> None:
    """The check above can fail: an unknown key or a bad value is reported."""
    bad = tmp_path / "bad.service"
    bad.write_text(
        local_copy(tmp_path).read_text().replace("ProtectSystem=strict", "ProtectSystem=stritc")
        + "\n[Service]\nWatchdogSecs=10\n"
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert "protect system" in result.stderr.lower()
    assert "WatchdogSecs" in result.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_rates_it_ok(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "offline" in result.stderr and result.returncode != 0:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
