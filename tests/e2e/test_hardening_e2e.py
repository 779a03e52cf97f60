"""The systemd unit's kernel restrictions do not break the shim: the real
daemon, started through a wrapper that applies the restriction to itself
and then execs it (as systemd does before it starts the service), gates a
login, relays both ways and closes a valid recording.

- `MemoryDenyWriteExecute=yes`: the kernel's equivalent, PR_SET_MDWE
  (Linux 6.3+), inherited by the daemon and its recorder process.
- `SystemCallFilter=~@resources`: a seccomp filter that kills the process
  on the first listed call (x86_64 numbers), less sched_setscheduler, which
  the unit gives back because the daemon puts its recorder at SCHED_IDLE.
  With that call denied too the daemon is killed: so it does make it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from shimmfa.core.recording_reader import verify
from waiting import wait_for

pytestmark = pytest.mark.e2e

TECH = "alice@example.org"
UNAVAILABLE = 77  # the wrapper could not restrict itself here
BANNER_END = b"<totp_code>\r\n> "

MDWE_WRAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""

# The unit's SystemCallFilter for @resources (x86_64 numbers).
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


def seccomp(denied: dict[str, int]) -> list[str]:
    return [sys.executable, "-c", SECCOMP_WRAPPER, ",".join(map(str, denied.values()))]


def started_or_skipped(rig, prefix: list[str], why: str) -> None:
    """The daemon through `prefix`, its banner read; skip when the wrapper
    cannot restrict itself on this kernel."""
    daemon = rig.start(ready=False, prefix=prefix)
    deadline = time.monotonic() + 10
    while BANNER_END not in rig.tech.buffer:
        if not daemon.alive:
            daemon.signalled = True
            if daemon.process.returncode == UNAVAILABLE:
                pytest.skip(why)
            pytest.fail(f"the daemon exited {daemon.process.returncode}: {daemon.log_text()}")
        assert time.monotonic() < deadline, "no banner within 10 s"
        rig.tech._read_once(0.05)
    rig.tech.read_until(BANNER_END)


def a_session_relays_and_is_recorded(rig) -> None:
    session_id = rig.login(TECH)
    to_device, to_technician = os.urandom(20_000), os.urandom(50_000)
    got_device, got_technician = rig.exchange(to_device, to_technician)
    assert (got_device, got_technician) == (to_device, to_technician)
    rig.tech.hangup()
    recording = wait_for(
        lambda: next(
            (
                p
                for p in (rig.storage / "sessions").glob(f"*{session_id}*.shrec")
                if verify(p.read_bytes()).status == "valid"
            ),
            None,
        ),
        "the session's recording, closed and valid",
        10,
    )
    assert verify(recording.read_bytes()).header["technician_id"] == TECH


def test_the_daemon_works_without_writable_executable_memory(make_shim) -> None:
    rig = make_shim(start=False, gate={"echo": False})
    started_or_skipped(rig, [sys.executable, "-c", MDWE_WRAPPER], "no PR_SET_MDWE (Linux < 6.3)")
    a_session_relays_and_is_recorded(rig)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 system call numbers")
def test_the_daemon_works_under_the_units_system_call_filter(make_shim) -> None:
    allowed_back = {k: v for k, v in RESOURCES_X86_64.items() if k != "sched_setscheduler"}
    rig = make_shim(start=False, gate={"echo": False})
    started_or_skipped(rig, seccomp(allowed_back), "cannot install a seccomp filter here")
    a_session_relays_and_is_recorded(rig)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 system call numbers")
def test_the_daemon_does_set_its_recorder_idle_so_the_unit_must_allow_it(make_shim) -> None:
    rig = make_shim(start=False, gate={"echo": False})
    daemon = rig.start(ready=False, prefix=seccomp(RESOURCES_X86_64))
    wait_for(lambda: not daemon.alive, "the daemon killed by the filter", 15)
    daemon.signalled = True  # its end is what this test expects
    assert daemon.process.returncode == -signal.SIGSYS, daemon.log_text()
