"""Fuzz the gate dialogue: a million random inputs, nothing reaches the device.

Feeds random technician input to `GateMachine` with a real `TotpGate`
(`MemoryAuthStore`, four known technicians) answering every `Authenticate`
through `auth_done`. Inputs are random byte chunks of random length, line
ends (CR, LF, CRLF), BS/DEL, Ctrl-C/Ctrl-U, NUL, UTF-8 (also broken),
full-width digits, and plausible `<id> <6 digits>` lines with known and
unknown IDs. No generated code is valid: the fuzzer knows the secrets and
skips any code that is valid near the time it is sent, and it checks every
code again when the gate asks for it. Between inputs the fixed clock moves
on, device output arrives, some answers come one input late, and the device
lock comes and goes.

Two phases: one with the default per-port backoff (the clock moves ~20 s
per input so the backoff does not swallow everything), one with
`backoff_initial=0` (every line is parsed). The invariants, counted over
both: no exception, no `ForwardToDevice` byte, no device byte delivered to
the technician while the gate is not open, and the gate never OPEN.

    python benchmarks/gate_fuzz.py [--inputs N] [--seed S] [--quick] [--json FILE] [--check]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from shimmfa.core.gate import (
    Action,
    Authenticate,
    ForwardToDevice,
    GateConfig,
    GateMachine,
    GateState,
    SendToTechnician,
)
from shimmfa.core.totp import MemoryAuthStore, TechnicianRecord, TotpGate, decode_secret, totp_code

START = 1_900_000_000.0
PERIOD = 30
WINDOW = 1
KNOWN = ("alice@example.org", "bob", "carol.tech@vendor.example", "d")
UNKNOWN = ("mallory", "alice@example.com", "ALICE@EXAMPLE.ORG", "x" * 200, "root")
FRESH_START = (b"", b"\r", b"\n", b"\x15", b"\x03")  # end or clear what came before
SEPARATORS = (" ", "  ", "\t")
ENDINGS = (b"\r", b"\n", b"\r\n", b"\n\r", b"")
SPICE = (
    b"\r",
    b"\n",
    b"\r\n",
    b"\x08",
    b"\x7f",
    b"\x00",
    b"\x03",
    b"\x15",
    b" ",
    b"\t",
    b"\x1b[A",
    b"\xff\xfe",
    b"\xc3",
    "é".encode(),
    "１２３４５６".encode(),
    "ℌ".encode(),
    b"breakglass 123456",
    b"123456",
    b"0",
)
PROGRESS_EVERY = 100_000


@dataclass
class Phase:
    name: str
    inputs: int = 0
    bytes_in: int = 0
    crashes: int = 0
    forwarded_bytes: int = 0
    leaked_device_bytes: int = 0
    opened: int = 0
    false_accepts: int = 0
    accidental_valid_codes: int = 0
    authentications: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    tracebacks: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = START
        self.secrets = {tid: base64.b32encode(self.rng.randbytes(20)).decode() for tid in KNOWN}
        self.keys = {tid: decode_secret(secret) for tid, secret in self.secrets.items()}
        self._codes: dict[int, dict[str, str]] = {}

    def clock(self) -> float:
        return self.now

    def codes_at(self, counter: int) -> dict[str, str]:
        codes = self._codes.get(counter)
        if codes is None:
            codes = {tid: totp_code(key, counter, 6, "SHA1") for tid, key in self.keys.items()}
            if len(self._codes) > 64:
                self._codes.clear()
            self._codes[counter] = codes
        return codes

    def is_valid(self, technician_id: str, code: str, margin: int = WINDOW) -> bool:
        """Would a code be accepted near now (ignoring replay)? Our own check."""
        if technician_id not in self.keys:
            return False
        counter = int(self.now // PERIOD)
        code = code.strip()
        return any(
            self.codes_at(c)[technician_id] == code
            for c in range(counter - margin, counter + margin + 1)
        )

    # -- inputs -------------------------------------------------------------

    def code(self, technician_id: str) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.75:
            while True:
                code = f"{rng.randrange(1_000_000):06d}"
                if not self.is_valid(technician_id, code, margin=WINDOW + 2):
                    return code
        if kind < 0.85:
            return "".join(chr(0xFF10 + rng.randrange(10)) for _ in range(6))
        if kind < 0.95:
            return "".join(rng.choice("0123456789") for _ in range(rng.choice((0, 5, 7, 8, 12))))
        return rng.choice(("12345a", "１２３４５６", "-12345", "+123456", "12 3456", "٣٣٣٣٣٣"))

    def line(self) -> bytes:
        rng = self.rng
        technician_id = rng.choice(KNOWN) if rng.random() < 0.7 else rng.choice(UNKNOWN)
        text = technician_id + rng.choice(SEPARATORS) + self.code(technician_id)
        if rng.random() < 0.2:
            text = rng.choice(("", " ", "\t")) + text + rng.choice(("", " ", " x"))
        data = rng.choice(FRESH_START) + text.encode()
        if rng.random() < 0.1:
            cut = rng.randrange(len(data) + 1)
            data = data[:cut] + b"\x7f" * rng.randrange(3) + data[cut:]
        return data + rng.choice(ENDINGS)

    def next_input(self) -> bytes:
        rng = self.rng
        kind = rng.random()
        if kind < 0.45:
            return self.line()
        if kind < 0.65:
            size = rng.randrange(600) if rng.random() < 0.05 else rng.randrange(33)
            return rng.randbytes(size)
        if kind < 0.95:
            return b"".join(
                rng.choice(SPICE) if rng.random() < 0.6 else rng.randbytes(rng.randrange(1, 8))
                for _ in range(rng.randrange(1, 8))
            )
        return self.line()[: rng.randrange(1, 12)]


def run_phase(fuzzer: Fuzzer, phase: Phase, count: int, config: GateConfig, step: float) -> None:
    rng = fuzzer.rng
    users = {tid: TechnicianRecord(tid, fuzzer.secrets[tid]) for tid in KNOWN}
    gate = TotpGate(
        users, time_source=fuzzer.clock, period=PERIOD, window=WINDOW, store=MemoryAuthStore()
    )
    machine = GateMachine(config)
    deferred: Authenticate | None = None
    legit = False  # a session opened by a code that was valid after all
    started = time.perf_counter()

    def execute(actions: list[Action], from_device: bool = False) -> None:
        nonlocal deferred
        for action in actions:
            phase.actions[type(action).__name__] += 1
            if isinstance(action, ForwardToDevice) and not legit:
                phase.forwarded_bytes += len(action.data)
            elif isinstance(action, SendToTechnician) and from_device:
                phase.leaked_device_bytes += len(action.data)
            elif isinstance(action, Authenticate):
                if rng.random() < 0.1:
                    deferred = action
                else:
                    answer(action)

    def answer(request: Authenticate) -> None:
        nonlocal legit
        valid = fuzzer.is_valid(request.technician_id, request.code)
        phase.accidental_valid_codes += valid
        outcome = gate.authenticate(request.technician_id, request.code)
        phase.authentications[outcome.result.value] += 1
        legit = valid and outcome.authenticated
        phase.false_accepts += outcome.authenticated and not valid
        execute(machine.auth_done(outcome, "fuzz-session", fuzzer.now))

    for index in range(count):
        data = fuzzer.next_input()
        phase.inputs += 1
        phase.bytes_in += len(data)
        fuzzer.now += rng.expovariate(1.0 / step)
        try:
            execute(machine.receive(data, fuzzer.now))
            if deferred is not None and rng.random() < 0.7:
                request, deferred = deferred, None
                answer(request)
            if rng.random() < 0.2:
                execute(machine.device_output(rng.randbytes(rng.randrange(1, 64))), True)
            if rng.random() < 0.01:
                execute(machine.lock("device", "Device not connected; try again later."))
            elif machine.state is GateState.LOCKED and rng.random() < 0.3:
                execute(machine.unlock("device"))
            elif rng.random() < 0.005:
                execute(machine.banner())
            if machine.state is GateState.OPEN:
                phase.opened += not legit
                execute(machine.end_session("fuzz"))
                legit = False
        except Exception:
            phase.crashes += 1
            if len(phase.tracebacks) < 5:
                phase.tracebacks.append(f"input {data!r}:\n{traceback.format_exc()}")
            machine, deferred, legit = GateMachine(config), None, False
        if (index + 1) % PROGRESS_EVERY == 0:
            elapsed = time.perf_counter() - started
            print(
                f"  {phase.name}: {index + 1:>9,} inputs  {(index + 1) / elapsed:>9,.0f}/s  "
                f"crashes {phase.crashes}  forwarded {phase.forwarded_bytes}",
                flush=True,
            )
    phase.seconds = time.perf_counter() - started


def positive_control(fuzzer: Fuzzer) -> bool:
    """The harness can tell: a valid code opens the gate and forwards what
    follows it, so zero forwarded bytes above is not vacuous."""
    technician_id = KNOWN[0]
    users = {technician_id: TechnicianRecord(technician_id, fuzzer.secrets[technician_id])}
    gate = TotpGate(users, time_source=fuzzer.clock, period=PERIOD, window=WINDOW)
    machine = GateMachine(GateConfig())
    code = fuzzer.codes_at(int(fuzzer.now // PERIOD))[technician_id]
    forwarded = b""
    pending = machine.receive(f"{technician_id} {code}\rpayload".encode(), fuzzer.now)
    while pending:
        action = pending.pop(0)
        if isinstance(action, Authenticate):
            outcome = gate.authenticate(action.technician_id, action.code)
            pending += machine.auth_done(outcome, "control", fuzzer.now)
        elif isinstance(action, ForwardToDevice):
            forwarded += action.data
    return machine.state is GateState.OPEN and forwarded == b"payload"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="total, both phases")
    parser.add_argument("--seed", type=int, help="random seed (default: from the clock)")
    parser.add_argument("--quick", action="store_true", help="100,000 inputs")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 if an invariant fails")
    args = parser.parse_args()
    total = 100_000 if args.quick else args.inputs
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    print(f"gate fuzz: {total:,} inputs, seed {seed}", flush=True)
    fuzzer = Fuzzer(seed)
    phases = [Phase("backoff 1 s..60 s"), Phase("backoff off")]
    run_phase(fuzzer, phases[0], total // 2, GateConfig(), step=20.0)
    run_phase(fuzzer, phases[1], total - total // 2, GateConfig(backoff_initial=0), step=1.0)
    control = positive_control(fuzzer)
    failed = not control
    print(f"positive control (a valid code opens and forwards): {'ok' if control else 'FAILED'}")
    for phase in phases:
        rate = phase.inputs / phase.seconds
        print(
            f"{phase.name}: {phase.inputs:,} inputs ({phase.bytes_in:,} bytes) in "
            f"{phase.seconds:.1f} s = {rate:,.0f} inputs/s\n"
            f"  crashes {phase.crashes}, ForwardToDevice bytes {phase.forwarded_bytes}, "
            f"device bytes leaked {phase.leaked_device_bytes}, sessions opened {phase.opened}, "
            f"false accepts {phase.false_accepts}, "
            f"accidental valid codes {phase.accidental_valid_codes}\n"
            f"  auth outcomes {dict(phase.authentications)}\n"
            f"  actions {dict(phase.actions)}"
        )
        for text in phase.tracebacks:
            print(text, file=sys.stderr)
        failed |= bool(
            phase.crashes
            or phase.forwarded_bytes
            or phase.leaked_device_bytes
            or phase.opened
            or phase.false_accepts
        )
    print(f"{'FAIL' if failed else 'PASS'}  crashes 0 and ForwardToDevice bytes 0")
    if args.json:
        results = {"seed": seed, "inputs": total, "ok": not failed, "control": control}
        results["phases"] = [{f.name: getattr(p, f.name) for f in fields(p)} for p in phases]
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
