"""The recorder: every session written to an encrypted, hash-chained, signed
file. `session_recorder` writes one file (`session_file`) and is the seed's
`SessionRecorder`; the daemon runs it in a child process (`process` in the
daemon, `child` in the child) so sealing never slows the relay; `storage`
watches the disk budget; `sessions` is what the link calls to start and
end a session; `files` reads recordings back (list, verify, export, play).

May import `state/`, `settings` and `config`; never `link/`, `reporting/` or
`tamper/`. The seed's names (`SessionRecorder`, `SessionMeta`, `Direction`,
`SiemTransport`) are importable from here, as in the seed.
"""

from shimmfa.shim.recorder.session_file import SessionMeta
from shimmfa.shim.recorder.session_recorder import (
    Direction,
    SessionRecorder,
    SiemTransport,
    StorageExhaustedError,
)

__all__ = [
    "Direction",
    "SessionMeta",
    "SessionRecorder",
    "SiemTransport",
    "StorageExhaustedError",
]
