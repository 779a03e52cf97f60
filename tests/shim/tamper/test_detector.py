"""The tamper detector: the seed prototype's behaviours on our API, with its
deliberate difference (a failing or stuck sensor fails closed) and the
durable latch."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from shimmfa.shim.state.store import StateStore
from shimmfa.shim.tamper import (
    FileSensor,
    HeartbeatRecord,
    ModemSensor,
    NullSensor,
    TamperDetector,
    TamperEvent,
)
from waiting import wait_for


class TriggerableSensor:
    name = "triggerable"

    def __init__(self) -> None:
        self._event: TamperEvent | None = None
        self._lock = threading.Lock()

    def trigger(self, event: TamperEvent | None) -> None:
        with self._lock:
            self._event = event

    def poll(self) -> TamperEvent | None:
        with self._lock:
            return self._event


class Rig:
    def __init__(self, *, latch_store: Any = None, **kwargs: Any) -> None:
        self.heartbeats: list[HeartbeatRecord] = []
        self.tampers: list[tuple[TamperEvent, dict[str, Any]]] = []
        self.stops: list[str] = []
        options: dict[str, Any] = {"heartbeat_period": 60.0, "sensor_poll_period": 0.01}
        options.update(kwargs)
        self.detector = TamperDetector(
            "test-shim",
            heartbeat_emit=self.heartbeats.append,
            tamper_emit=lambda event, detail: self.tampers.append((event, detail)),
            emergency_stop=self.stops.append,
            latch_store=latch_store,
            **options,
        )

    def __enter__(self) -> Rig:
        self.detector.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detector.stop()


def test_initial_state_is_ok() -> None:
    assert Rig().detector.state == "ok"


def test_sensor_event_triggers_emergency_stop_and_latches_state() -> None:
    sensor = TriggerableSensor()
    with Rig(sensors=[sensor]) as rig:
        sensor.trigger(TamperEvent.CASE_OPENED)
        wait_for(lambda: bool(rig.stops))
    assert rig.stops == ["tamper:case_opened"]
    assert rig.detector.state == "tampered"
    assert [event for event, _ in rig.tampers] == [TamperEvent.CASE_OPENED]


def test_an_event_that_lasts_is_reported_once() -> None:
    sensor = TriggerableSensor()
    with Rig(sensors=[sensor], heartbeat_period=0.05) as rig:
        sensor.trigger(TamperEvent.MAGNETIC_ANOMALY)
        wait_for(lambda: len(rig.heartbeats) >= 3 and bool(rig.stops))
    assert rig.stops == ["tamper:magnetic_anomaly"]


def test_report_tamper_directly() -> None:
    rig = Rig()
    rig.detector.report_tamper(TamperEvent.BOOT_INTEGRITY_VIOLATED, source="boot")
    assert rig.detector.state == "tampered"
    assert rig.stops == ["tamper:boot_integrity_violated"]
    assert rig.tampers[0][1]["source"] == "boot"


def test_admin_reset_returns_to_ok_and_a_sensor_still_seeing_it_latches_again() -> None:
    sensor = TriggerableSensor()
    with Rig(sensors=[sensor]) as rig:
        sensor.trigger(TamperEvent.CASE_OPENED)
        wait_for(lambda: rig.detector.state == "tampered")
        rig.detector.admin_reset(authorised_by="security_admin", reason="still open")
        wait_for(lambda: len(rig.stops) == 2)
        assert rig.detector.state == "tampered"
        sensor.trigger(None)
        rig.detector.admin_reset(authorised_by="security_admin", reason="closed and sealed")
        assert rig.detector.state == "ok"


def test_heartbeats_are_emitted_periodically_and_reflect_the_state() -> None:
    with Rig(heartbeat_period=0.05) as rig:
        wait_for(lambda: len(rig.heartbeats) >= 2)
        rig.detector.report_tamper(TamperEvent.MAGNETIC_ANOMALY, source="test")
        seen = len(rig.heartbeats)
        wait_for(lambda: len(rig.heartbeats) >= seen + 2)
    assert all(beat.shim_id == "test-shim" for beat in rig.heartbeats)
    assert rig.heartbeats[0].state == "ok"
    assert rig.heartbeats[-1].state == "tampered"


def test_the_first_heartbeat_is_sent_at_start() -> None:
    with Rig(heartbeat_period=3600) as rig:
        wait_for(lambda: len(rig.heartbeats) == 1)


def test_null_sensor_does_nothing() -> None:
    with Rig(sensors=[NullSensor()], heartbeat_period=0.05) as rig:
        wait_for(lambda: len(rig.heartbeats) >= 3)
    assert rig.tampers == [] and rig.stops == []
    assert rig.detector.state == "ok"


def test_a_failing_sensor_fails_closed_with_sensor_fault() -> None:
    """The seed kept going with state ok; we latch (DESIGN §7)."""

    class BadSensor:
        name = "bad"

        def poll(self) -> TamperEvent | None:
            raise RuntimeError("simulated sensor fault")

    with Rig(sensors=[BadSensor()], heartbeat_period=0.05) as rig:
        wait_for(lambda: bool(rig.stops) and len(rig.heartbeats) >= 2)
    assert rig.stops == ["tamper:sensor_fault"]
    assert rig.detector.state == "tampered"
    event, detail = rig.tampers[0]
    assert event is TamperEvent.SENSOR_FAULT
    assert "simulated sensor fault" in detail["error"]


def test_a_sensor_that_stops_answering_is_a_sensor_fault_and_heartbeats_go_on() -> None:
    release = threading.Event()

    class StuckSensor:
        name = "stuck"

        def poll(self) -> TamperEvent | None:
            release.wait(5)
            return None

    try:
        with Rig(sensors=[StuckSensor()], sensor_timeout=0.1, heartbeat_period=0.05) as rig:
            wait_for(lambda: bool(rig.stops))
            seen = len(rig.heartbeats)
            wait_for(lambda: len(rig.heartbeats) >= seen + 2)
            assert rig.stops == ["tamper:sensor_fault"]
            assert rig.tampers[0][1]["source"] == "watchdog"
    finally:
        release.set()


def test_multiple_sensors_are_all_polled() -> None:
    first, second = TriggerableSensor(), TriggerableSensor()
    second.name = "second"
    with Rig(sensors=[first, second]) as rig:
        second.trigger(TamperEvent.UNEXPECTED_MOTION)
        wait_for(lambda: bool(rig.stops))
    assert rig.tampers[0][0] is TamperEvent.UNEXPECTED_MOTION


def test_a_failing_emergency_stop_callback_does_not_stop_the_latch_or_the_event(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path)
    tampers: list[TamperEvent] = []

    def bad_stop(reason: str) -> None:
        raise RuntimeError("simulated callback failure")

    detector = TamperDetector(
        "x",
        heartbeat_emit=lambda record: None,
        tamper_emit=lambda event, detail: tampers.append(event),
        emergency_stop=bad_stop,
        latch_store=store,
    )
    detector.report_tamper(TamperEvent.CASE_OPENED, source="test")
    assert detector.state == "tampered"
    assert tampers == [TamperEvent.CASE_OPENED]
    latch = store.latch()
    assert latch is not None and latch.reason == "tamper:case_opened"


def test_the_latch_survives_a_restart_and_only_admin_reset_clears_it(tmp_path: Path) -> None:
    rig = Rig(latch_store=StateStore(tmp_path))
    rig.detector.report_tamper(TamperEvent.CASE_OPENED, source="test")
    restarted = Rig(latch_store=StateStore(tmp_path))
    assert restarted.detector.state == "tampered"
    assert restarted.detector.latch_reason == "tamper:case_opened"
    restarted.detector.admin_reset(authorised_by="admin@example.org", reason="inspected")
    again = Rig(latch_store=StateStore(tmp_path))
    assert again.detector.state == "ok"
    actions = [entry.action for entry in StateStore(tmp_path).audit_log()]
    assert actions == ["tamper_latched", "tamper_latch_reset"]


@pytest.mark.parametrize("content", ["1", "1\n", " 1 "])
def test_file_sensor_fires_on_its_triggered_value(tmp_path: Path, content: str) -> None:
    path = tmp_path / "value"
    path.write_text(content)
    assert FileSensor(path).poll() is TamperEvent.CASE_OPENED


def test_file_sensor_is_quiet_otherwise_and_raises_when_the_file_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "value"
    path.write_text("0")
    sensor = FileSensor(path, event=TamperEvent.MAGNETIC_ANOMALY)
    assert sensor.poll() is None
    path.write_text("1")
    assert sensor.poll() is TamperEvent.MAGNETIC_ANOMALY
    path.unlink()
    with pytest.raises(FileNotFoundError):
        sensor.poll()


def test_modem_sensor_fires_when_dcd_or_dsr_drops_not_when_never_high() -> None:
    sensor = ModemSensor()
    sensor.update((False, False))
    sensor.update((False, False))
    assert sensor.poll() is None  # a 3-wire cable never raises DCD/DSR
    sensor.update((True, True))
    sensor.update((True, False))
    assert sensor.poll() is TamperEvent.CABLE_PULLED
    sensor.clear()
    assert sensor.poll() is None
