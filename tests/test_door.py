"""The door relay (edge/act/door.py) on gpiozero's mock pins: alone and through the runner."""

from __future__ import annotations

import time

import pytest

from edge.act.door import DoorConfig, DoorRelay

from test_arming import NIGHT, runner

RELAY = 23


@pytest.fixture
def factory():
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.close()


def states(pin) -> list[bool]:
    return [bool(s.state) for s in pin.states]


def wait_low(pin, timeout=3.0) -> None:
    deadline = time.monotonic() + timeout
    while pin.state and time.monotonic() < deadline:
        time.sleep(0.01)


def test_opens_for_n_seconds_then_shuts(factory):
    with_relay = DoorRelay(DoorConfig(relay_pin=RELAY, open_seconds=0.2), pin_factory=factory)
    pin = factory.pin(RELAY)
    t0 = time.monotonic()
    assert with_relay.open("mask track 1")
    assert pin.state
    wait_low(pin)
    took = time.monotonic() - t0
    assert not pin.state and 0.15 <= took < 1.5
    assert states(pin) == [False, True, False]  # the full history: one opening
    with_relay.close()


def test_active_low_relay_boards(factory):
    d = DoorRelay(DoorConfig(relay_pin=RELAY, active_high=False, open_seconds=5), pin_factory=factory)
    pin = factory.pin(RELAY)
    assert pin.state  # idle: high = relay open on an active-low board
    d.open()
    assert not pin.state
    d.shut()
    assert pin.state  # shut: back to the idle level
    d.close()


def test_never_while_disarmed_or_faulted_and_a_fault_shuts_it(factory):
    d = DoorRelay(DoorConfig(relay_pin=RELAY, open_seconds=30), pin_factory=factory)
    pin = factory.pin(RELAY)
    d.set_armed(False)
    assert not d.open() and not pin.state
    d.set_armed(True)
    d.set_fault(True)
    assert not d.open() and not pin.state
    d.set_fault(False)
    assert d.open() and pin.state
    d.set_fault(True)  # camera lost while open: shut now, not after 30 s
    assert not pin.state
    d.set_fault(False)
    d.open()
    d.shut("violation")
    assert not pin.state
    assert d.status()["openings"] == 2 and d.status()["refused"] == 2
    assert states(pin) == [False, True, False, True, False]
    d.close()


def test_open_on_narrows_the_labels(factory):
    d = DoorRelay(DoorConfig(relay_pin=RELAY, open_on=["me"]), pin_factory=factory)
    assert d.may_open("ME", ["mask", "me"]) and not d.may_open("mask", ["mask", "me"])
    d.close()
    d = DoorRelay(DoorConfig(relay_pin=RELAY + 1), pin_factory=factory)
    assert d.may_open("mask", ["mask"]) and not d.may_open("no_mask", ["mask"])
    d.close()


def test_runner_opens_for_the_masked_face_only(tmp_path, factory):
    r, act, _ = runner(tmp_path, f"[door]\nrelay_pin = {RELAY}\nopen_seconds = 0.2\n", pin_factory=factory)
    assert r.run() == 0
    pin = factory.pin(RELAY)
    # The unmasked walk-in opened nothing; the masked visitor opened it once; it is shut after the run.
    assert states(pin) == [False, True, False]
    assert act.names() == ["alert", "compliant", "close"]


def test_runner_never_opens_while_disarmed(tmp_path, factory):
    extra = f"[door]\nrelay_pin = {RELAY}\n[arming]\nrecord_when_disarmed = true\n" + NIGHT
    r, _, _ = runner(tmp_path, extra, when="2025-01-06 23:30", pin_factory=factory)
    assert r.run() == 0
    assert states(factory.pin(RELAY)) == [False]


def test_runner_passes_faults_to_the_relay(tmp_path, factory, monkeypatch):
    """Model failures (the fault pattern) reach the relay: shut while they last, open after."""
    from edge.fakes import BLUE, ListSource, frame_with

    seen: list[bool] = []
    orig = DoorRelay.set_fault
    monkeypatch.setattr(DoorRelay, "set_fault", lambda self, f: (seen.append(bool(f)), orig(self, f))[1])
    frames = [frame_with([(60 - i, 30, 30, BLUE)]) for i in range(14)]

    class Failing(ListSource):
        def read(self):
            det.fail = self.i < 4  # the detector fails on the first frames, then recovers
            return super().read()

    r, _, _ = runner(tmp_path, f"[door]\nrelay_pin = {RELAY}\nopen_seconds = 0.2\n", pin_factory=factory,
                     source=Failing(frames))
    det = r._interps[0]
    assert r.run() == 0
    assert seen[:3] == [False, True, False]  # start (camera fine), models failing, recovered
    assert r._door_relay.openings == 1
