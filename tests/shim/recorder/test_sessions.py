"""`RecordedSessions.problem`: why no session can be recorded, as the
technician is told it. A recorder that dies between the liveness check and
the storage query is down, not out of disk: an engineer must not go looking
for a full disk that is not (the race the e2e test
`test_a_recorder_that_dies_is_replaced_without_a_restart` met under load)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from shimmfa.errors import RecordingError
from shimmfa.shim.recorder.process import RecorderProcess
from shimmfa.shim.recorder.sessions import RecordedSessions, Unrecordable


class Recorder:
    """The two answers `problem` asks of the recorder process."""

    def __init__(self, *, down: str | None = None, storage: str | Exception | None = None) -> None:
        self.down, self.storage = down, storage

    def record(self, *_: object) -> None: ...

    def revive(self) -> str | None:
        return self.down

    def storage_problem(self) -> str | None:
        if isinstance(self.storage, Exception):
            raise self.storage
        return self.storage


class Alerts:
    shim_id = "shim-a"

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def emit(self, kind: str, fields: Mapping[str, Any], *, at: float | None = None) -> bool:
        self.kinds.append(kind)
        return True


def problem_of(recorder: Recorder, alerts: Alerts) -> Unrecordable | None:
    sessions = RecordedSessions(cast(RecorderProcess, recorder), alerts, siem=None)  # type: ignore[arg-type]
    return sessions.problem()


def test_a_recorder_that_stops_answering_is_down_not_out_of_disk() -> None:
    alerts = Alerts()
    dead = Recorder(storage=RecordingError("the recorder process did not answer"))
    found = problem_of(dead, alerts)
    assert found == Unrecordable("the recorder process did not answer", recorder=True)
    assert alerts.kinds == ["recording_unavailable"]


def test_a_full_disk_and_a_replaced_recorder_are_told_apart() -> None:
    alerts = Alerts()
    assert problem_of(Recorder(storage="only 1 MiB left"), alerts) == Unrecordable(
        "only 1 MiB left"
    )
    down = problem_of(Recorder(down="the recorder process died; it is being replaced"), alerts)
    assert down is not None and down.recorder
    assert problem_of(Recorder(), alerts) is None
    assert alerts.kinds == ["storage_exhausted", "recording_unavailable"]
