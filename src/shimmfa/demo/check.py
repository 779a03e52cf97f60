"""`shimmfa demo --check`: the demo's flow, unattended, step by step; each
step raises DemoError when what a user relies on does not hold."""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable
from typing import TypeVar

from shimmfa.core.heartbeat import verify_heartbeat
from shimmfa.core.totp import decode_secret, totp_code
from shimmfa.demo.central import DemoCentral
from shimmfa.demo.shim import (
    SECOND_FACTOR,
    SHIM_ID,
    SYNC_PERIOD,
    TECHNICIAN,
    TWO_FACTOR,
    VENDOR,
    Demo,
)
from shimmfa.errors import DemoError
from shimmfa.shim.recorder.files import open_recording, raw_bytes

__all__ = ["run_checks"]


def run_checks(demo: Demo) -> list[str]:
    steps: list[tuple[str, Callable[[], None]]] = []
    report: list[str] = []

    def step(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def add(fn: Callable[[], None]) -> Callable[[], None]:
            steps.append((name, fn))
            return fn

        return add

    @step("malformed login line refused, nothing reaches the device")
    def _() -> None:
        demo.send(b"hello\r")
        demo.read_until(b"Format: <technician_id> <totp_code>\r\n> ")

    @step(f"authenticated as {TECHNICIAN} with the current code")
    def _() -> None:
        demo.send(f"{TECHNICIAN} {demo.current_code()}\r".encode())
        demo.read_until(b"Pass-through enabled. Disconnect to end session.\r\n")

    @step("device login with its hard-coded password")
    def _() -> None:
        demo.send(b"\r")
        demo.read_until(b"login: ")
        demo.send(b"service\r")
        demo.read_until(b"password: ")
        demo.send(b"vip3200\r")
        demo.read_until(b"svc> ")

    @step("device status and a 200-line log stream")
    def _() -> None:
        demo.send(b"status\r")
        demo.read_until(b"state: RUNNING")
        demo.send(b"log 200\r")
        demo.read_until(b"end of log\r\n")

    @step("session ends when the technician hangs up")
    def _() -> None:
        os.close(demo.tech_master)
        demo.tech_master = -1
        deadline = time.monotonic() + 10
        while b"reason=technician_hangup" not in demo.shim_log.read_bytes():
            if time.monotonic() > deadline:
                raise DemoError("the shim did not log the end of the session")
            time.sleep(0.05)

    @step(f"{TWO_FACTOR} logs in with two factors after the port reconnects")
    def _() -> None:
        demo.reconnect_technician()
        demo.read_until(b"<totp_code>\r\n> ")
        first, second = (demo.current_code(secret) for secret in demo.second_secrets)
        demo.send(f"{TWO_FACTOR} {first}\r".encode())
        demo.read_until(f"Next factor: {SECOND_FACTOR}\r\n> ".encode())
        demo.send(f"{second}\r".encode())
        demo.read_until(b"Pass-through enabled. Disconnect to end session.\r\n")

    @step("the device never saw the unauthenticated line")
    def _() -> None:
        seen = demo.device_record.read_bytes()
        if b"hello" in seen or TECHNICIAN.encode() in seen:
            raise DemoError("unauthenticated bytes reached the device")

    @step("the session recording verifies and holds the device's output, encrypted")
    def _() -> None:
        path = demo.wait_for_recording()
        recording = open_recording(path, demo.recording_identity)
        if recording.verdict.status != "valid":
            raise DemoError(f"{path.name}: {recording.verdict.message}")
        if b"end of log" not in b"".join(raw_bytes(recording, "out")):
            raise DemoError("the recording lacks the device's output")
        if b"end of log" in path.read_bytes():
            raise DemoError("the recording holds plaintext")

    @step("the central admin logs in with password, code and a second factor")
    def _() -> None:
        if demo.central is None:
            raise DemoError("the demo has no central service")
        if demo.central.login_admin() != "admin":
            raise DemoError("the admin's session has another role")

    @step("central verified the demo shim's signed heartbeats and shows it ok")
    def _() -> None:
        central = demo.central
        if central is None:
            raise DemoError("the demo has no central service")
        row = central.wait_status(SHIM_ID, "ok")
        beats = central.get(f"/api/v1/shims/{SHIM_ID}/heartbeats")["items"]
        key = base64.b64decode(demo.public_key.partition(":")[2])
        if not beats or row["boot_count"] is None:
            raise DemoError("central holds no heartbeat of the demo shim")
        for beat in beats:
            verify_heartbeat(beat["wire"], {SHIM_ID: key}, {})

    vendor: dict[str, str] = {}

    @step(f"{VENDOR}, enrolled through central's API, synced to the shim, logs in at the PTY")
    def _() -> None:
        os.close(demo.tech_master)  # the two-factor session ends
        demo.tech_master = -1
        _wait(lambda: demo.shim_log_text().count("reason=technician_hangup") >= 2, "its end")
        _wait(lambda: "technician(s) from central" in demo.shim_log_text(), "the first sync")
        demo.reconnect_technician()
        demo.read_until(b"<totp_code>\r\n> ")
        demo.send(f"{VENDOR} {demo.current_code(demo.vendor_secret)}\r".encode())
        reply = demo.read_until(b"Pass-through enabled. Disconnect to end session.\r\n")
        found = re.search(rb"; session (\S+)\r\n", reply)
        if found is None:
            raise DemoError(f"no session ID in {reply!r}")
        vendor["session"] = found[1].decode()
        demo.send(b"status\r")  # the device is still logged in from the first session
        demo.read_until(b"state: RUNNING")
        os.close(demo.tech_master)
        demo.tech_master = -1

    @step("central holds that session's recording, verified, and plays the device's text back")
    def _() -> None:
        central = _central(demo)

        def stored() -> dict[str, object] | None:
            items = central.get(f"/api/v1/recordings?shim_id={SHIM_ID}")["items"]
            return next((i for i in items if i["session_id"] == vendor["session"]), None)

        row = _wait(stored, "the upload")
        if row["status"] != "valid":
            raise DemoError(f"central's verification says {row['status']}")
        if "state: RUNNING" not in central.auditor_get(f"/api/v1/recordings/{row['id']}/asciicast"):
            raise DemoError("central's playback lacks the device's text")

    @step(f"{VENDOR}, revoked at central, is refused at the port after the next sync")
    def _() -> None:
        _central(demo).post(f"/api/v1/technicians/{VENDOR}/revoke")
        _wait(
            lambda: f"technicians no longer valid here: {VENDOR}" in demo.shim_log_text(),
            "the revocation to reach the shim",
            timeout=3 * SYNC_PERIOD,
        )
        demo.reconnect_technician()
        demo.read_until(b"<totp_code>\r\n> ")
        unused = totp_code(decode_secret(demo.vendor_secret), int(time.time() // 30) + 1, 6, "SHA1")
        demo.send(f"{VENDOR} {unused}\r".encode())
        demo.read_until(b"Auth fail: DENIED (invalid credentials)\r\n> ")

    for name, fn in steps:
        started = time.monotonic()
        fn()
        report.append(f"  PASS  {name} ({(time.monotonic() - started) * 1000:.0f} ms)")
    return report


T = TypeVar("T")


def _wait(predicate: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def _central(demo: Demo) -> DemoCentral:
    if demo.central is None:
        raise DemoError("the demo has no central service")
    return demo.central
