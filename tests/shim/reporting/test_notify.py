"""The systemd notify client (`shimmfa.shim.reporting.notify`) against a real AF_UNIX
datagram socket bound here, by path and in the abstract namespace, the way
systemd listens; the sender's credentials are checked as systemd does for
`NotifyAccess=main`."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shimmfa.shim.reporting.notify import READY, STOPPING, WATCHDOG, notify, watchdog_interval

RECEIVE_TIMEOUT = 5.0


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(RECEIVE_TIMEOUT)  # a deadline, not a wait
    yield sock
    sock.close()


def receive(sock: socket.socket) -> tuple[bytes, int]:
    """(datagram, sender pid)."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    pids = [
        struct.unpack("iII", payload)[0]
        for level, kind, payload in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
    ]
    assert len(pids) == 1
    return data, pids[0]


def test_messages_reach_a_socket_at_a_path(tmp_path: Path, listener: socket.socket) -> None:
    path = tmp_path / "notify"
    listener.bind(str(path))
    env = {"NOTIFY_SOCKET": str(path)}
    for message in (READY, WATCHDOG, STOPPING):
        assert notify(message, env) is True
        assert receive(listener) == (message.encode(), os.getpid())


def test_messages_reach_an_abstract_socket(listener: socket.socket) -> None:
    name = f"shimmfa-test-{os.getpid()}-{id(listener)}"
    listener.bind("\0" + name)
    env = {"NOTIFY_SOCKET": "@" + name}
    for message in (READY, WATCHDOG, STOPPING):
        assert notify(message, env) is True
        assert receive(listener)[0] == message.encode()
    assert not Path(name).exists()  # nothing made on the file system


def test_several_assignments_and_utf8_go_in_one_datagram(
    tmp_path: Path, listener: socket.socket
) -> None:
    listener.bind(str(tmp_path / "notify"))
    message = "READY=1\nSTATUS=port open — ttyUSB0"
    assert notify(message, {"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert receive(listener)[0] == message.encode("utf-8")


def test_the_environment_is_read_by_default(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener.bind(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    assert notify(READY)
    assert receive(listener)[0] == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify(READY) is False


def test_a_daemon_started_by_systemd_notifies_from_its_own_pid(
    tmp_path: Path, listener: socket.socket
) -> None:
    listener.bind(str(tmp_path / "notify"))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shimmfa.shim.reporting.notify import notify; notify('READY=1')",
        ],
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    try:
        assert receive(listener) == (b"READY=1", child.pid)
    finally:
        assert child.wait(timeout=30) == 0


def test_without_notify_socket_nothing_is_sent() -> None:
    assert notify(READY, {}) is False
    assert notify(READY, {"NOTIFY_SOCKET": ""}) is False


def test_an_unreachable_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert notify(READY, {"NOTIFY_SOCKET": str(tmp_path / "nobody")}) is False
    assert "nobody" in caplog.text
    plain = tmp_path / "plain-file"
    plain.write_text("")
    assert notify(READY, {"NOTIFY_SOCKET": str(plain)}) is False
    assert notify(READY, {"NOTIFY_SOCKET": "@shimmfa-test-no-listener-here"}) is False
    assert notify(READY, {"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    assert "vsock" in caplog.text


@pytest.mark.parametrize("message", ["", "READY", "=1", "READY=1\nWATCHDOG"])
def test_a_malformed_message_is_a_bug(message: str) -> None:
    with pytest.raises(ValueError, match="NAME=value"):
        notify(message, {})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "self"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "10_000"}, None),
        ({"WATCHDOG_USEC": " 10"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 5.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
