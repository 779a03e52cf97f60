"""`shimmfa demo --check`: the demo's flow, unattended, step by step; each
step raises DemoError when what a user relies on does not hold."""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from shimmfa.core.gate import EMERGENCY_NOTICE
from shimmfa.core.heartbeat import verify_heartbeat
from shimmfa.core.totp import decode_secret, totp_code
from shimmfa.demo.breakglass import DemoBreakglass
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

    emergency: dict[str, str] = {}

    @step("break-glass: a request at central, approved by 2 of clinical AND 1 of infosec")
    def _() -> None:
        central, breakglass = _central(demo), _breakglass(demo)
        status, opened = central.call(
            "POST",
            "/api/v1/breakglass/requests",
            {"shim_id": SHIM_ID, "reason": "demo: pump occluded, vendor has no enrolment"},
        )
        if status != 201:
            raise DemoError(f"break-glass request: HTTP {status} {opened}")
        request = opened["request"]
        path = f"/api/v1/breakglass/requests/{request['id']}/code"
        status, early = central.call("POST", path, {"kek": opened["kek"]})
        if status == 200:
            raise DemoError("central released a code before any approval")
        for holder in ("clinical/clara", "infosec/iris", "clinical/carl"):
            breakglass.approve(request, holder)
        status, released = central.call("POST", path, {"kek": opened["kek"]})
        if status != 200:
            raise DemoError(f"the code after both departments approved: HTTP {status} {released}")
        if central.call("POST", path, {"kek": opened["kek"]})[0] != 410:
            raise DemoError("central released the break-glass code twice")
        emergency["code"] = str(released["totp"])

    @step("`breakglass <code>` at the PTY opens a session under emergency audit")
    def _() -> None:
        demo.reconnect_technician()
        demo.read_until(b"<totp_code>\r\n> ")
        demo.send(f"breakglass {emergency['code']}\r".encode())
        reply = demo.read_until(b"Pass-through enabled. Disconnect to end session.\r\n")
        found = re.search(rb"; session (\S+)\r\n", reply)
        if found is None or EMERGENCY_NOTICE.encode() not in reply:
            raise DemoError(f"no emergency session in {reply!r}")
        emergency["session"] = found[1].decode()
        demo.send(b"status\r")
        demo.read_until(b"state: RUNNING")
        os.close(demo.tech_master)
        demo.tech_master = -1

    @step("central opened its review; both departments sign off and it closes")
    def _() -> None:
        central, breakglass = _central(demo), _breakglass(demo)

        def review() -> dict[str, Any] | None:
            _, found = central.call("GET", f"/api/v1/breakglass/reviews?shim_id={SHIM_ID}")
            items = found.get("reviews", []) if isinstance(found, dict) else []
            return next((r for r in items if r["session_id"] == emergency["session"]), None)

        opened = _wait(review, "the review (the shim's two breakglass_session alerts)")
        for name in ("clara", "iris"):
            status, body = breakglass.as_holder(
                name,
                "POST",
                f"/api/v1/breakglass/reviews/{opened['id']}/signoffs",
                {"comment": f"{name}: justified, the pump was serviced"},
            )
            if status != 201:
                raise DemoError(f"{name}'s sign-off: HTTP {status} {body}")
        closed = review()
        if closed is None or closed["state"] != "closed":
            raise DemoError(f"the review is {closed and closed['state']}, not closed")

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


def _breakglass(demo: Demo) -> DemoBreakglass:
    if demo.breakglass is None:
        raise DemoError("the demo has no break-glass deal")
    return demo.breakglass


def _central(demo: Demo) -> DemoCentral:
    if demo.central is None:
        raise DemoError("the demo has no central service")
    return demo.central
