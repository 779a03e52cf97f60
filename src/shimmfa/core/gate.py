"""The gate dialogue as a sans-I/O state machine.

The relay feeds technician bytes to `GateMachine.receive(data, now)` and
executes the actions it gets back; it decides nothing itself. Rules:

- No `ForwardToDevice` is ever produced unless the state is OPEN, and the
  state becomes OPEN only through `auth_done()` with an OK outcome for the
  `Authenticate` request this machine made.
- A line ends at CR, LF or CRLF (a LF right after a CR belongs to the same
  end, even across reads). BS/DEL edit the line; Ctrl-C/Ctrl-U clear it.
- A line longer than `max_line` bytes, a line that is not UTF-8, has control
  characters or is not exactly two tokens gets the `Format:` reply; the rest
  of an over-long line is dropped up to its end.
- A technician whose MFA chain asks for more than the login line's code is
  prompted `Next factor: <label>` (`auth_done(..., next_factor=label)`):
  the next line, whatever it holds, goes to the chain as that factor's code
  (`Authenticate(step=n)`). Any failure at any step restarts from the banner.
  Without a chain the dialogue is the seed's, byte for byte.
- Every authentication failure gets the same reply; the precise reason is in
  the `AuthFailed` action, for the log. Consecutive failures at this port
  start a backoff (initial, doubling, capped); input during a backoff is
  discarded with one notice per backoff. `restore_backoff` carries the
  count and what is left of a backoff over a restart (shim/port_backoff).
- `breakglass <code>` is a login line like any other (its replay floor,
  lockout and backoff are a login's); its session's success text carries
  one more line, `EMERGENCY_NOTICE`.
- Bytes that follow the auth line in the same read are forwarded once the
  session is open. Device output outside OPEN is discarded and counted.
- States the transition table does not cover leave the port closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shimmfa.core.gate_actions import (
    Action,
    Authenticate,
    AuthFailed,
    Discarded,
    FormatRejected,
    ForwardToDevice,
    SendToTechnician,
    SessionClosed,
    SessionOpened,
)
from shimmfa.core.totp import AuthOutcome

__all__ = [
    "BANNER",
    "BREAKGLASS_ID",
    "EMERGENCY_NOTICE",
    "FAILURE",
    "FORMAT_HELP",
    "Action",
    "AuthFailed",
    "Authenticate",
    "Discarded",
    "ForwardToDevice",
    "FormatRejected",
    "GateConfig",
    "GateMachine",
    "GateState",
    "SendToTechnician",
    "SessionClosed",
    "SessionOpened",
]

CRLF = b"\r\n"
PROMPT = b"> "
BANNER = b"\r\nShim MFA gate. Authenticate as: <technician_id> <totp_code>\r\n> "
FORMAT_HELP = b"\r\nFormat: <technician_id> <totp_code>\r\n> "
FAILURE = b"\r\nAuth fail: DENIED (invalid credentials)\r\n> "
# `breakglass <code>`: the shim's break-glass secret, released by a quorum
BREAKGLASS_ID = "breakglass"
EMERGENCY_NOTICE = (
    "EMERGENCY ACCESS: this session is under emergency audit; clinical engineering "
    "and information security have been alerted."
)

_CR, _LF, _BS, _DEL, _ETX, _NAK = 0x0D, 0x0A, 0x08, 0x7F, 0x03, 0x15


class GateState(StrEnum):
    CHALLENGE = "CHALLENGE"
    FACTOR = "FACTOR"  # a chain's further factor is asked for
    AUTHENTICATING = "AUTHENTICATING"
    OPEN = "OPEN"
    LOCKED = "LOCKED"
    EMERGENCY_STOP = "EMERGENCY_STOP"


@dataclass(frozen=True, slots=True)
class GateConfig:
    echo: bool = True
    max_line: int = 256
    backoff_initial: float = 1.0
    backoff_max: float = 60.0


def _success(technician_id: str, session_id: str) -> bytes:
    notice = f"{EMERGENCY_NOTICE}\r\n" if technician_id == BREAKGLASS_ID else ""
    return (
        f"\r\nAuthenticated as {technician_id}; session {session_id}\r\n{notice}"
        "Pass-through enabled. Disconnect to end session.\r\n"
    ).encode()


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0


class GateMachine:
    """One gate per technician port. See the module docstring for the rules."""

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self.state = GateState.CHALLENGE
        self.session_id: str | None = None
        self.technician_id: str | None = None
        self.discarded_device_bytes = 0
        self._line = bytearray()
        self._after_cr = False
        self._dropping_line = False
        self._pending = b""
        self._failures = 0
        self._backoff_until = 0.0
        self._backoff_noticed = False
        self._locks: dict[str, bytes] = {}
        self._chain: tuple[str, int] | None = None  # (technician, step) while in FACTOR

    # -- entry points -------------------------------------------------------

    def banner(self) -> list[Action]:
        """What to show a technician who has just connected."""
        self._reset_line()
        if self.state is GateState.LOCKED:
            return [SendToTechnician(BANNER + b"".join(self._locks.values()))]
        if self.state is GateState.FACTOR:  # a new technician: the chain starts again
            self.state, self._chain = GateState.CHALLENGE, None
        if self.state is GateState.CHALLENGE:
            return [SendToTechnician(BANNER)]
        return []

    def receive(self, data: bytes, now: float) -> list[Action]:
        if self.state is GateState.OPEN:
            data = self._skip_lf_after_cr(bytes(data))
            return [ForwardToDevice(data)] if data else []
        if self.state in (GateState.CHALLENGE, GateState.FACTOR):
            return self._challenge(bytes(data), now)
        if self.state is GateState.AUTHENTICATING:
            self._pending += self._skip_lf_after_cr(bytes(data))
            return []
        if self.state is GateState.LOCKED:
            return [Discarded(len(data), "gate locked")] if data else []
        return [Discarded(len(data), "emergency stop")] if data else []

    @property
    def failures(self) -> int:
        """Consecutive authentication failures at this port (0 after a login)."""
        return self._failures

    def backoff_remaining(self, now: float) -> float:
        """Seconds of the current backoff left at `now` (0 if none)."""
        return max(0.0, self._backoff_until - now)

    def restore_backoff(self, failures: int, remaining: float, now: float) -> None:
        """Carry the port's failures and backoff over a restart. `remaining`
        is clamped to [0, backoff_max]: a clock that jumped between the two
        runs cannot hold the port for longer than one full backoff."""
        self._failures = max(0, failures)
        wait = min(max(remaining, 0.0), self.config.backoff_max)
        self._backoff_until = now + (wait if self.config.backoff_initial > 0 else 0.0)
        self._backoff_noticed = False

    @property
    def locks(self) -> frozenset[str]:
        """The names of the locks held (see `lock`)."""
        return frozenset(self._locks)

    @property
    def awaiting_lf(self) -> bool:
        """True when the line before ended with CR and the LF that may follow
        (and belongs to it) has not arrived yet: the next technician bytes
        must go through `receive()` so that this LF is dropped."""
        return self._after_cr

    def device_output(self, data: bytes) -> list[Action]:
        """Device bytes arriving while the session is not open are dropped."""
        if self.state is GateState.OPEN:
            return [SendToTechnician(bytes(data))] if data else []
        self.discarded_device_bytes += len(data)
        return []

    def auth_done(
        self,
        outcome: AuthOutcome,
        session_id: str | None,
        now: float,
        next_factor: str | None = None,
    ) -> list[Action]:
        """Result of the `Authenticate` request. A session opens only for an
        OK outcome with a session ID; an OK outcome with `next_factor` asks
        for that factor's code."""
        if self.state is not GateState.AUTHENTICATING:
            return []
        pending, self._pending = self._pending, b""
        step = self._chain[1] if self._chain is not None else 0
        self._chain = None
        if outcome.authenticated and next_factor and not session_id:
            self.state = GateState.FACTOR
            self._chain = (outcome.technician_id, step + 1)
            label = "".join(ch if not _is_control(ch) else "?" for ch in next_factor[:64])
            prompt: list[Action] = [SendToTechnician(f"\r\nNext factor: {label}\r\n> ".encode())]
            return prompt + (self._challenge(pending, now) if pending else [])
        if outcome.authenticated and session_id:
            self.state = GateState.OPEN
            self.session_id = session_id
            self.technician_id = outcome.technician_id
            self._failures = 0
            actions: list[Action] = [
                SendToTechnician(_success(outcome.technician_id, session_id)),
                SessionOpened(outcome.technician_id, session_id),
            ]
            if pending:
                actions.append(ForwardToDevice(pending))
            return actions
        self.state = GateState.CHALLENGE
        self._failures += 1
        delay = self._backoff_delay()
        self._backoff_until = now + delay
        self._backoff_noticed = False
        actions = [
            AuthFailed(outcome.technician_id, outcome.result, outcome.detail, delay),
            SendToTechnician(FAILURE),
        ]
        if pending:
            actions.extend(self._challenge(pending, now))
        return actions

    def end_session(self, reason: str) -> list[Action]:
        """Close the open session (idle, hang-up, max duration, shutdown...).
        The caller shows the banner again when the next technician is there."""
        if self.state is not GateState.OPEN or self.session_id is None:
            return []
        closed = SessionClosed(self.session_id, reason)
        self.state = GateState.CHALLENGE
        self.session_id = None
        self.technician_id = None
        self._reset_line()
        return [closed]

    def lock(self, key: str, notice: str) -> list[Action]:
        """Refuse logins while any lock is held (device missing, storage
        exhausted, tamper latch). `notice` is shown under the banner."""
        actions = self.end_session(f"locked:{key}")
        self._locks[key] = f"\r\n{notice}\r\n".encode()
        if self.state is not GateState.EMERGENCY_STOP:
            self.state = GateState.LOCKED
            self._pending = b""
            self._chain = None
        return actions

    def unlock(self, key: str) -> list[Action]:
        """Release one lock; the banner is shown when none is left."""
        self._locks.pop(key, None)
        if self.state is not GateState.LOCKED or self._locks:
            return []
        self.state = GateState.CHALLENGE
        return self.banner()

    def emergency_stop(self, reason: str) -> list[Action]:
        """Close everything for good; only a restart leaves this state."""
        actions = self.end_session(reason)
        self.state = GateState.EMERGENCY_STOP
        self._pending = b""
        return [*actions, SendToTechnician(f"\r\nEMERGENCY STOP: {reason}\r\n".encode())]

    # -- the challenge line editor ------------------------------------------

    def _backoff_delay(self) -> float:
        if self.config.backoff_initial <= 0:
            return 0.0
        delay = self.config.backoff_initial * (2.0 ** min(self._failures - 1, 62))
        return float(min(delay, self.config.backoff_max))

    def _reset_line(self) -> None:
        self._line.clear()
        self._dropping_line = False

    def _challenge(self, data: bytes, now: float) -> list[Action]:
        actions: list[Action] = []
        echo = bytearray()
        for index, byte in enumerate(data):
            if now < self._backoff_until:
                self._flush_echo(echo, actions)
                actions.extend(self._discard_in_backoff(len(data) - index, now))
                self._reset_line()
                break
            if byte == _LF and self._after_cr:
                self._after_cr = False
                continue
            self._after_cr = byte == _CR
            if byte in (_CR, _LF):
                self._flush_echo(echo, actions)
                actions.extend(self._end_of_line())
                if self.state is GateState.AUTHENTICATING:
                    self._pending = self._skip_lf_after_cr(data[index + 1 :])
                    break
                continue
            if self._dropping_line:
                continue
            if byte in (_BS, _DEL):
                if self._line:
                    self._erase_last_char()
                    echo += b"\b \b"
                continue
            if byte in (_ETX, _NAK):
                self._reset_line()
                echo += b"^C" + CRLF + PROMPT
                continue
            if len(self._line) >= self.config.max_line:
                self._flush_echo(echo, actions)
                self._reset_line()
                self._dropping_line = True
                actions.append(FormatRejected(f"line longer than {self.config.max_line} bytes"))
                actions.append(SendToTechnician(FORMAT_HELP))
                continue
            self._line.append(byte)
            if byte >= 0x20:
                echo.append(byte)
        self._flush_echo(echo, actions)
        return actions

    def _skip_lf_after_cr(self, data: bytes) -> bytes:
        """Drop the LF of a CRLF whose CR ended the previous line, even when
        it arrives in a later read (after the auth line, it must not reach
        the device). Once any byte has followed the CR, the pair is decided."""
        if not (self._after_cr and data):
            return data
        self._after_cr = False
        return data[1:] if data[0] == _LF else data

    def _flush_echo(self, echo: bytearray, actions: list[Action]) -> None:
        if echo and self.config.echo:
            actions.append(SendToTechnician(bytes(echo)))
        echo.clear()

    def _erase_last_char(self) -> None:
        while self._line and 0x80 <= self._line[-1] < 0xC0:
            self._line.pop()
        if self._line:
            self._line.pop()

    def _discard_in_backoff(self, nbytes: int, now: float) -> list[Action]:
        actions: list[Action] = [Discarded(nbytes, "backoff")]
        if not self._backoff_noticed:
            self._backoff_noticed = True
            wait = max(1, int(self._backoff_until - now + 0.999))
            notice = f"\r\nToo many failed attempts: input ignored for {wait} s.\r\n> "
            actions.append(SendToTechnician(notice.encode()))
        return actions

    def _end_of_line(self) -> list[Action]:
        if self._dropping_line and self._chain is None:
            self._reset_line()
            return []
        line = bytes(self._line)
        self._reset_line()
        if self._chain is not None:  # whatever it is, it is this factor's attempt
            self.state = GateState.AUTHENTICATING
            technician_id, step = self._chain
            text = line.decode("utf-8", "replace").strip()
            return [Authenticate(technician_id, text, step)]
        tokens = line.split()
        reason = ""
        if len(tokens) != 2:
            reason = f"{len(tokens)} tokens"
        else:
            try:
                technician_id, code = (token.decode("utf-8") for token in tokens)
            except UnicodeDecodeError:
                reason = "not UTF-8"
            else:
                if any(_is_control(ch) for ch in technician_id + code):
                    reason = "control characters"
        if reason:
            return [FormatRejected(reason), SendToTechnician(FORMAT_HELP)]
        self.state = GateState.AUTHENTICATING
        return [Authenticate(technician_id, code)]
