"""Actuators on gpiozero's MockFactory: full pin histories, pattern timing, mute, fault, close.

Pattern timing runs in virtual time (tests/virtual_time.py): gpiozero's threads are
real, but their waits and the mock pins' clock are moved by the test, so every
duration is exact and no CPU load or emulation speed (make test-arm) changes it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from pydantic import ValidationError

from edge.act.actuators import Actuators, GpioConfig
from edge.errors import HardwareError
from edge.fakes import FakeClock

from virtual_time import VirtualTime

# Durations are virtual, so exact but for float rounding.
TOL = 1e-6

RED, GREEN, BUZ, BTN = 17, 27, 22, 5


@pytest.fixture
def factory():
    """A MockFactory with PWM-capable pins as gpiozero's default; restored afterwards."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    old = Device.pin_factory
    f = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = f
    try:
        yield f
    finally:
        f.reset()
        Device.pin_factory = old


@pytest.fixture
def vt(monkeypatch):
    """Virtual time for the pattern threads (install before the Actuators are made)."""
    v = VirtualTime().install(monkeypatch)
    yield v
    left = [t for t in v.threads if t.is_alive()]
    for t in left:  # never leave a thread waiting on a clock nobody moves
        getattr(t, "stopping", getattr(t, "finished", None)).set()
        v._interrupt(t)
    assert not left, f"pattern threads still running after the test: {left}"


def cfg(**kw) -> GpioConfig:
    base = dict(red_led=RED, green_led=GREEN, buzzer=BUZ, alert_on_seconds=0.15, alert_off_seconds=0.35,
                alert_repeats=3, compliant_seconds=0.3, fault_on_seconds=0.05, fault_off_seconds=0.25)
    base.update(kw)
    return GpioConfig(**base)


def history(pin) -> list[tuple[float, object]]:
    """The FULL state history: (seconds since the previous change, state), first entry = initial."""
    return [(s.timestamp, s.state) for s in pin.states]


def assert_history(pin, expected: list[tuple[float | None, object]]) -> None:
    """Compare the whole history (not a prefix, unlike MockPin.assert_states).

    ``expected`` holds (duration of the previous state or None for "don't care", state).
    """
    got = history(pin)
    assert [s for _, s in got] == [s for _, s in expected], f"pin {pin.info.name}: {got}"
    for i, ((dt, _), (want, _)) in enumerate(zip(got, expected)):
        if want is not None:
            assert abs(dt - want) <= TOL, f"pin {pin.info.name} change {i}: {dt:.3f}s, want {want}s: {got}"


def alert_history(c: GpioConfig, high=True) -> list:
    seq: list = [(None, False), (None, high)]
    for i in range(c.alert_repeats):
        seq.append((c.alert_on_seconds, False if high is True else 0.0))
        if i < c.alert_repeats - 1:
            seq.append((c.alert_off_seconds, high))
    return seq


def wait_pattern(vt: VirtualTime, c: GpioConfig) -> None:
    vt.advance(c.alert_seconds + 0.25)


def test_alert_pattern_full_history_and_timing(factory, vt):
    c = cfg()
    with Actuators(c, pin_factory=factory) as act:
        red, green, buz = factory.pin(RED), factory.pin(GREEN), factory.pin(BUZ)
        # alert() returns without any time passing (a wait on the pattern would raise here),
        # the pattern's first step on its own threads.
        act.alert()
        vt.settle()
        assert [s for _, s in history(red)] == [False, True] and [s for _, s in history(buz)] == [False, True]
        wait_pattern(vt, c)
        assert_history(red, alert_history(c))
        assert_history(buz, alert_history(c))
        assert_history(green, [(None, False)])


def test_compliant_lights_green_for_configured_time(factory, vt):
    c = cfg()
    with Actuators(c, pin_factory=factory) as act:
        green, red = factory.pin(GREEN), factory.pin(RED)
        act.compliant()
        vt.advance(c.compliant_seconds + 0.2)
        assert_history(green, [(None, False), (None, True), (c.compliant_seconds, False)])
        assert_history(red, [(None, False)])


def test_alert_turns_green_off(factory, vt):
    c = cfg(compliant_seconds=5)
    with Actuators(c, pin_factory=factory) as act:
        green = factory.pin(GREEN)
        act.compliant()
        vt.advance(0.1)
        act.alert()
        assert_history(green, [(None, False), (None, True), (0.1, False)])


def test_fault_pattern_is_distinct_and_clears(factory, vt):
    c = cfg()
    with Actuators(c, pin_factory=factory) as act:
        red, buz = factory.pin(RED), factory.pin(BUZ)
        act.set_fault(True)
        act.set_fault(True)  # repeated calls do not restart the pattern
        assert act.fault
        vt.advance(1.0)
        act.set_fault(False)
        n = len(red.states)
        vt.advance(0.4)
        got = history(red)
        assert len(red.states) == n, "pattern kept running after set_fault(False)"
        states = [s for _, s in got]
        assert not states[0] and not states[-1]
        assert states[1:] == [True, False] * ((len(states) - 1) // 2)
        assert (len(states) - 1) // 2 == 4, got  # flashes at 0, 0.3, 0.6, 0.9 s of 1 s
        on = [dt for dt, s in got[2::2][:-1]]
        off = [dt for dt, s in got[3::2]]
        assert all(abs(d - c.fault_on_seconds) <= TOL for d in on), got
        assert all(abs(d - c.fault_off_seconds) <= TOL for d in off), got
        assert_history(buz, [(None, False)])  # a fault is silent


def test_alert_during_fault_then_fault_resumes(factory, vt):
    c = cfg(alert_repeats=2)
    with Actuators(c, pin_factory=factory) as act:
        red = factory.pin(RED)
        act.set_fault(True)
        vt.advance(0.02)  # inside the first short flash
        red.clear_states()  # history from here: True (flash interrupted)
        act.alert()
        vt.advance(c.alert_seconds + c.fault_on_seconds + 0.1)
        got = history(red)
        states = [s for _, s in got]
        # alert blinks (the LED was already on, so the first "on" is no change), then the fault flash resumes.
        assert states[:5] == [True, False, True, False, True], got
        assert abs(got[1][0] - c.alert_on_seconds) <= TOL, got
        assert abs(got[2][0] - c.alert_off_seconds) <= TOL, got
        assert abs(got[3][0] - c.alert_on_seconds) <= TOL, got
        assert abs(got[4][0] - c.alert_off_seconds) <= TOL, got  # resume at end of the alert's last off
        if len(got) > 5:
            assert not got[5][1] and abs(got[5][0] - c.fault_on_seconds) <= TOL, got


def test_mute_button_silences_buzzer_for_n_minutes(factory, vt):
    clock = FakeClock(1000.0)  # the mute's minutes (the Actuators' own clock), apart from the patterns' seconds
    c = cfg(mute_button=BTN, mute_minutes=3, alert_repeats=1)
    with Actuators(c, pin_factory=factory, clock=clock) as act:
        buz, red, btn = factory.pin(BUZ), factory.pin(RED), factory.pin(BTN)
        assert not act.muted
        btn.drive_low()  # pressed (pull-up button to ground)
        btn.drive_high()
        assert act.muted
        act.alert()
        wait_pattern(vt, c)
        assert_history(buz, [(None, False)])  # silent while muted
        assert [s for _, s in history(red)] == [False, True, False]  # the LED still warns
        clock.t += 3 * 60 - 1
        assert act.muted
        clock.t += 2
        assert not act.muted
        act.alert()
        wait_pattern(vt, c)
        assert_history(buz, alert_history(c))


def test_mute_press_stops_a_running_beep(factory, vt):
    c = cfg(mute_button=BTN, alert_on_seconds=2.0)
    with Actuators(c, pin_factory=factory) as act:
        buz, btn = factory.pin(BUZ), factory.pin(BTN)
        act.alert()
        vt.advance(0.1)
        btn.drive_low()
        assert_history(buz, [(None, False), (None, True), (0.1, False)])


def test_tonal_buzzer_plays_tone_pattern(factory, vt):
    from gpiozero.tones import Tone

    c = cfg(buzzer_kind="tonal", buzzer_tone="A5", alert_repeats=2)
    with Actuators(c, pin_factory=factory) as act:
        buz = factory.pin(BUZ)
        seen = []
        act.alert()
        vt.advance(0.05)
        seen.append(buz.frequency)
        wait_pattern(vt, c)
        assert seen[0] == pytest.approx(Tone("A5").frequency)
        assert buz.frequency is None  # silent after the pattern
        states = [s for _, s in history(buz)]
        assert states == [0.0, 0.5, 0.0, 0.5, 0.0], history(buz)
        got = history(buz)
        assert abs(got[2][0] - c.alert_on_seconds) <= TOL
        assert abs(got[3][0] - c.alert_off_seconds) <= TOL
        assert abs(got[4][0] - c.alert_on_seconds) <= TOL


@pytest.mark.parametrize("kind", ["active", "tonal"])
def test_close_mid_pattern_turns_everything_off_at_once(factory, vt, kind):
    c = cfg(buzzer_kind=kind, alert_on_seconds=5, alert_off_seconds=5, compliant_seconds=30)
    before = {t for t in threading.enumerate()}
    act = Actuators(c, pin_factory=factory)
    pins = [factory.pin(p) for p in (RED, GREEN, BUZ)]
    act.compliant()
    act.alert()
    act.set_fault(True)  # fault during alert: a resume timer is pending too
    act.alert()
    vt.advance(0.05)
    assert any(p.state for p in pins)
    t_virtual = vt.now
    # close() stops every pattern thread and the timer without waiting for them: no time
    # passes meanwhile (the clock is the test's), so a close that waited for a pattern would
    # hang here until its join timed out (gpiozero's ZombieThread), not merely be slow.
    act.close()
    assert vt.now == t_virtual
    assert all(not p.state for p in pins), [history(p) for p in pins]
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == [], leftover
    act.close()  # idempotent
    act.alert()  # no-ops after close
    act.compliant()
    act.set_fault(False)


def test_disabled_pins_are_not_claimed(factory):
    c = cfg(red_led=None, buzzer=None)
    with Actuators(c, pin_factory=factory) as act:
        act.alert()
        act.set_fault(True)
        act.compliant()
        assert factory.pin(GREEN).state
    from gpiozero import LED

    LED(RED, pin_factory=factory).close()  # never claimed, so free


def test_busy_pin_raises_hardware_error_and_frees_the_rest(factory):
    from gpiozero import LED

    blocker = LED(BUZ, pin_factory=factory)
    with pytest.raises(HardwareError, match="GPIO pins"):
        Actuators(cfg(), pin_factory=factory)
    blocker.close()
    Actuators(cfg(), pin_factory=factory).close()  # red/green were released


def test_sound_plays_without_blocking_and_never_twice(factory, tmp_path):
    wav = tmp_path / "warn.wav"
    wav.write_bytes(b"RIFF")
    started: list[subprocess.Popen] = []

    def popen(cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        started.append(p)
        return p

    # The player runs 60 s; two alerts (a real process start each time if it stacked) must
    # return long before: the bound only tells "waited for the player" from "did not", on
    # any CPU (an emulated Pi starts a process in well under a second).
    player = [sys.executable, "-c", "import time; time.sleep(60)"]
    c = cfg(sound_file=wav, sound_player=player, alert_repeats=1)
    act = Actuators(c, pin_factory=factory, popen=popen)
    t0 = time.monotonic()
    act.alert()
    act.alert()
    assert time.monotonic() - t0 < 20
    assert len(started) == 1
    assert started[0].args == [*player, str(wav)]
    assert started[0].poll() is None
    act.close()
    assert started[0].poll() is not None, "close() must stop the player"


def test_sound_starts_again_after_the_previous_finished(factory, tmp_path):
    wav = tmp_path / "warn.wav"
    wav.write_bytes(b"RIFF")
    calls = []

    class Done:
        def poll(self):
            return 0

    def popen(cmd, **kw):
        calls.append(cmd)
        return Done()

    with Actuators(cfg(sound_file=wav), pin_factory=factory, popen=popen) as act:
        act.alert()
        act.alert()
    assert len(calls) == 2


def test_missing_sound_player_does_not_break_the_alarm(factory, vt, tmp_path, caplog):
    c = cfg(sound_file=tmp_path / "x.wav", sound_player=["/nonexistent/aplay"], alert_repeats=1)
    with Actuators(c, pin_factory=factory) as act:
        act.alert()
        act.alert()
        wait_pattern(vt, c)
        # The second alert restarts the (still running) beep: one on-period, then off.
        assert_history(factory.pin(BUZ), alert_history(c))
    assert sum("sound disabled" in r.message for r in caplog.records) == 1


def test_muted_alert_plays_no_sound(factory, tmp_path):
    clock = FakeClock(1000.0)
    calls = []
    c = cfg(sound_file=tmp_path / "x.wav", alert_repeats=1)
    with Actuators(c, pin_factory=factory, clock=clock, popen=lambda *a, **k: calls.append(a)) as act:
        act.mute(1)
        act.alert()
    assert calls == []


def test_pin_activity_is_logged(factory, caplog):
    caplog.set_level("INFO", logger="doorguard.gpio")
    with Actuators(cfg(), pin_factory=factory) as act:
        act.alert()
        act.compliant()
        act.set_fault(True)
    text = "\n".join(r.message for r in caplog.records)
    assert "alert: red LED GPIO17 + buzzer GPIO22" in text
    assert "compliant: green LED GPIO27" in text
    assert "fault pattern on" in text
    assert "closed, all outputs off" in text


def test_config_validation():
    with pytest.raises(ValidationError, match="both use BCM pin 17"):
        GpioConfig(red_led=17, buzzer=17)
    with pytest.raises(ValidationError):
        GpioConfig(red_pin=3)  # extra keys are refused
    with pytest.raises(ValidationError):
        GpioConfig(buzzer_kind="loud")
    for name, field in GpioConfig.model_fields.items():
        assert field.description, f"{name} has no description"
    assert GpioConfig().alert_seconds == pytest.approx(5 * 0.4)


def test_default_factory_off_a_pi_is_mock(monkeypatch, vt):
    """`make run` on a laptop: pin_factory=None gives mock pins instead of BadPinFactory."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockPin

    import edge.act.actuators as actuators

    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(actuators, "on_raspberry_pi", lambda root=None: False)
    c = cfg(alert_repeats=1)
    with Actuators(c) as act:
        pin = act._red.pin
        assert isinstance(pin, MockPin)
        act.alert()
        wait_pattern(vt, c)
        assert_history(pin, alert_history(c))
    # On a Pi, or when the user chose a factory, None stays gpiozero's default.
    monkeypatch.setattr(actuators, "on_raspberry_pi", lambda root=None: True)
    assert actuators.default_pin_factory() is None
    monkeypatch.setattr(actuators, "on_raspberry_pi", lambda root=None: False)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "lgpio")
    assert actuators.default_pin_factory() is None


def test_on_raspberry_pi_reads_the_device_tree(tmp_path):
    from edge.act.actuators import on_raspberry_pi

    assert not on_raspberry_pi(tmp_path)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    assert on_raspberry_pi(tmp_path)


def test_outputs_can_be_switched_off_from_toml(tmp_path):
    """TOML has no null: "none" / false disable a pin, and a config file can say so."""
    import tomllib

    raw = tomllib.loads('red_led = "none"\ngreen_led = false\nbuzzer = 22\nmute_button = "off"\n')
    cfg = GpioConfig(**raw)
    assert (cfg.red_led, cfg.green_led, cfg.buzzer, cfg.mute_button) == (None, None, 22, None)
    with pytest.raises(ValueError):
        GpioConfig(red_led="seventeen")
