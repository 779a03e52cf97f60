"""The one exception tree of shimmfa.

Expected outcomes (a wrong TOTP code, a locked technician) are values, not
exceptions; these are for input a person must fix and for conditions the
program cannot work around. Every message says what to do next.

    ShimMfaError
     ├── ConfigError          the configuration file is wrong (exit code 2)
     ├── StateError           the durable state DB is unreadable or corrupt
     ├── SerialPortError      a serial endpoint cannot be opened or configured
     ├── TechnicianError      a technician management request cannot be done
     ├── RecordingError       a recording is unreadable, or a session call is out of order
     │    └── SessionStateError  (also a RuntimeError) a recorder call out of order
     ├── KeyFileError         a key file is missing, malformed or readable by others
     │    └── WrongIdentityError  (also a RecordingError) the identity cannot open a data key
     ├── HeartbeatError       a heartbeat is malformed, forged, from an unknown shim or replayed
     ├── BundleError          a technician bundle from central is forged, not for this
     │                        shim, older than the one held, or malformed
     ├── MFAChainBreached     an MFA chain step was called out of order, before its
     │                        attempt started or after it completed
     ├── ShareError           (also a ValueError) a Shamir split or combine refused its input
     ├── DealError            (also a ValueError) a quorum deal cannot be made as asked
     ├── TocError             (also a ValueError) a Toc is malformed or does not fit the others
     ├── QuorumError          the quorum dealer, oracle or its client refused a request:
     │                        a sealed Toc that does not open, a session that is unknown,
     │                        expired or already released, a bad KEK, too few Tocs
     ├── CentralError         the central service cannot do what was asked (a bad
     │    │                   database URL, an unknown operator, shim or token)
     │    └── SchemaError     the central database is not at the schema this
     │                        version needs: run `shimmfa central init` (exit code 2)
     └── DemoError            the demo could not set itself up

This module imports nothing from the rest of the package.
"""

from __future__ import annotations


class ShimMfaError(Exception):
    """Base class of every error shimmfa raises on purpose."""

    exit_code = 1


class ConfigError(ShimMfaError):
    """The configuration is invalid; the message names the file and the key."""

    exit_code = 2


class StateError(ShimMfaError):
    """The state database cannot be used; the port stays closed."""

    exit_code = 3


class SerialPortError(ShimMfaError):
    """A serial endpoint could not be opened or configured."""

    exit_code = 4


class TechnicianError(ShimMfaError):
    """A technician cannot be added, found, removed or unlocked as asked."""

    exit_code = 1


class RecordingError(ShimMfaError):
    """A recording cannot be read, or the recorder was used out of order."""

    exit_code = 1


class SessionStateError(RecordingError, RuntimeError):
    """A session call that does not fit the recorder's state (seed: RuntimeError)."""


class KeyFileError(ShimMfaError):
    """A key file is missing, malformed, or not private to the shim."""

    exit_code = 5


class WrongIdentityError(RecordingError, KeyFileError):
    """The age identity given cannot open a recording's data key."""

    exit_code = 5


class HeartbeatError(ShimMfaError):
    """A heartbeat was refused: malformed, unknown shim, bad signature, or not
    newer than the last one accepted from that shim. `reason` says which, as a
    short code (`core.heartbeat.Rejection`) a receiver can count or map."""

    exit_code = 1

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class BundleError(ShimMfaError):
    """A technician bundle from central was refused: not signed by the pinned
    key, not for this shim, not newer than the one held, undecryptable or
    malformed. `reason` says which, as a short code
    (`core.bundle.BundleRejection`). Messages never contain a secret."""

    exit_code = 1

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class MFAChainBreached(ShimMfaError):  # noqa: N818 - seed 003's public name
    """A caller broke an MFA chain's protocol (seed 003's name): it verified a
    factor other than the one the attempt expects, or verified before
    `initialize_attempt()` or after the attempt completed. Start a new attempt.
    A wrong code is not this error: it is a `Result` that says RESET."""

    exit_code = 1


class ShareError(ShimMfaError, ValueError):
    """Shamir split or combine refused its arguments: a threshold or part count
    out of range, an empty secret, or parts that cannot belong together."""

    exit_code = 1


class DealError(ShimMfaError, ValueError):
    """A quorum deal cannot be made: the secret is not a base32 TOTP secret, or
    the players, groups, thresholds or note are out of range (farMFA's dealer
    messages where farMFA has one)."""

    exit_code = 1


class TocError(ShimMfaError, ValueError):
    """A Toc was refused: malformed, of another group, a duplicate share, too
    few for the quorum, or Tocs that do not combine. `reason` says which, as a
    short code (`core.toc.TocRejection`) an oracle can map to an HTTP status.
    Messages never contain share bytes or the secret."""

    exit_code = 1

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class QuorumError(ShimMfaError):
    """The quorum dealer, the oracle or its client cannot do what was asked:
    an age-sealed Toc that is not armored or does not open with the identity
    given, a session that is unknown, expired or already released, a KEK that
    does not open the session, Tocs that do not reach the quorum. `reason`
    is a short code (`shimmfa.quorum.records.Refusal`, or an oracle's error
    code on the client side) that the oracle maps to an HTTP status. Messages
    never contain a share, a secret, a KEK or an identity."""

    exit_code = 1

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class CentralError(ShimMfaError):
    """The central service cannot do what was asked: the message says what
    to change (a database URL, an operator, shim or token that does not
    exist or already does)."""

    exit_code = 1


class SchemaError(CentralError):
    """The central database's schema is missing or not the one this version
    needs; `shimmfa central init` creates or upgrades it."""

    exit_code = 2


class DemoError(ShimMfaError):
    """The demo could not set itself up."""

    exit_code = 1
