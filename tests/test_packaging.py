"""The systemd unit in packaging/: the settings the daemon relies on and the
hardening we promise, read by a small unit-file parser here, then checked by
`systemd-analyze verify` and `systemd-analyze security --offline` when
systemd's tools are installed."""

from __future__ import annotations

import os
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


def demo_check_wrapped(cwd: Path, wrapper: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`shimmfa demo --check` (real daemon, gate, relay, recording) started
    through `wrapper`, a Python script that restricts itself and execs the
    rest of its arguments (exit 77: it could not)."""
    return subprocess.run(
        [sys.executable, "-c", wrapper, *args, str(SHIMMFA), "demo", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


MDWE_WRAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.e2e
def test_the_daemon_runs_without_writable_executable_memory(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes must not break the shim: the demo's
    unattended check (real daemon, gate, relay, recording, keys) runs with
    the kernel's equivalent, PR_SET_MDWE (Linux 6.3+), inherited by the
    daemon it starts."""
    result = demo_check_wrapped(tmp_path, MDWE_WRAPPER)
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "PASS in" in result.stdout
    # ...and the restriction was really there, in a process started the same way.
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"
    refused = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "PermissionError" in refused.stderr


# The unit's SystemCallFilter for @resources, as a seccomp filter (x86_64
# numbers): each listed call kills the process, as systemd's filter does.
RESOURCES_X86_64 = {
    "ioprio_set": 251,
    "mbind": 237,
    "migrate_pages": 256,
    "move_pages": 279,
    "sched_setaffinity": 203,
    "sched_setattr": 314,
    "sched_setparam": 142,
    "sched_setscheduler": 144,
    "set_mempolicy": 238,
    "set_mempolicy_home_node": 450,
    "setpriority": 141,
    "setrlimit": 160,
}
SECCOMP_WRAPPER = """
import ctypes, os, struct, sys
denied = [int(n) for n in sys.argv[1].split(",")]
ALLOW, KILL, ARCH_X86_64 = 0x7FFF0000, 0x80000000, 0xC000003E
n = len(denied)
program = [(0x20, 0, 0, 4), (0x15, 0, n + 1, ARCH_X86_64), (0x20, 0, 0, 0)]
program += [(0x15, n - i, 0, nr) for i, nr in enumerate(denied)]
program += [(0x06, 0, 0, ALLOW), (0x06, 0, 0, KILL)]
code = b"".join(struct.pack("HBBI", *op) for op in program)
buffer = ctypes.create_string_buffer(code)
fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buffer))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _demo_check_under_seccomp(
    where: Path, denied: dict[str, int]
) -> subprocess.CompletedProcess[str]:
    where.mkdir()
    result = demo_check_wrapped(where, SECCOMP_WRAPPER, ",".join(map(str, denied.values())))
    if result.returncode == 77:
        pytest.skip("cannot install a seccomp filter here")
    return result


@pytest.mark.e2e
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 system call numbers")
def test_the_daemon_runs_under_the_units_system_call_filter(tmp_path: Path) -> None:
    """`SystemCallFilter=~@resources` kills a process on the first call it
    denies; the unit gives back sched_setscheduler, which the daemon uses to
    put its recorder at SCHED_IDLE. The demo's unattended check (real daemon,
    recorder process, gate, relay, recording) passes under the same filter,
    and fails when that call is denied too: so the daemon does make it."""
    allowed_back = {k: v for k, v in RESOURCES_X86_64.items() if k != "sched_setscheduler"}
    result = _demo_check_under_seccomp(tmp_path / "allowed", allowed_back)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "PASS in" in result.stdout
    killed = _demo_check_under_seccomp(tmp_path / "denied", RESOURCES_X86_64)
    assert killed.returncode != 0
    assert "PASS in" not in killed.stdout
