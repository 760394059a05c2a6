"""Arm / disarm / mute / schedules (edge/decide/arming.py) through its seams: an injected wall clock,
the state file, the runner on a list source, gpiozero's mock pins, the Flask test client."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

import pytest

from edge import cli, config, service
from edge.decide.arming import Arming
from edge.settings.arming import ArmingConfig
from edge.errors import ConfigError
from edge.fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators,
                        FakeNotifier, ListSource, frame_with, write_classifier_manifest,
                        write_detector_manifest)
from edge.settings.web import WebConfig
from edge.act.web.passwords import hash_password, write_password_file
from edge.act.web.server import WebServer

UTC = timezone.utc
NIGHT = '[[arming.schedule]]\nstate = "disarmed"\nstart = "22:00"\nend = "07:00"\n'


def at(text: str) -> float:
    """Unix time of a UTC wall-clock time 'YYYY-MM-DD HH:MM' (2025-01-06 is a Monday)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, text: str) -> None:
        self.t = at(text)

    def __call__(self) -> float:
        return self.t

    def set(self, text: str) -> None:
        self.t = at(text)


def arming_cfg(text: str) -> ArmingConfig:
    return config.parse(text).arming


def make(tmp_path, text: str = NIGHT, when: str = "2025-01-06 21:00", **kw) -> tuple[Arming, Clock]:
    clock = Clock(when)
    a = Arming(arming_cfg(text), tmp_path, db_path=tmp_path / "events.sqlite3", clock=clock, tz=UTC, **kw)
    return a, clock


# ---- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, path", [
    ('[[arming.schedule]]\nstate = "disarmed"\nstart = "22:60"\n', "arming.schedule.0.start (line 3)"),
    ('[[arming.schedule]]\nstate = "off"\n', "arming.schedule.0.state (line 2)"),
    ('[[arming.schedule]]\nstate = "armed"\ndays = ["mon", "funday"]\n', "arming.schedule.0.days (line 3)"),
    ('[[arming.schedule]]\nstate = "armed"\nstart = "08:00"\nend = "08:00"\n', "arming.schedule.0"),
    ('[arming]\ndefault = "sometimes"\n', "arming.default (line 2)"),
    ('[arming]\nschedul = []\n', "arming.schedul (line 2): unknown key"),
    ('[door]\nrelay_pin = 22\n', "door (line 1): Value error, relay_pin 22 is also gpio.buzzer"),
])
def test_bad_arming_and_door_config_names_the_key_path(text, path):
    with pytest.raises(ConfigError) as e:
        config.parse(text, "door.toml")
    assert f"door.toml: {path}" in str(e.value)


def test_overlapping_windows_with_different_states_are_refused():
    text = NIGHT + '[[arming.schedule]]\nstate = "armed"\ndays = ["weekdays"]\nstart = "06:00"\nend = "09:00"\n'
    with pytest.raises(ConfigError, match=r"arming: .*windows 0 .* and 1 .* overlap on mon at 06:00"):
        config.parse(text)
    # Same state: an overlap is harmless.
    config.parse(NIGHT + '[[arming.schedule]]\nstate = "disarmed"\nstart = "06:00"\nend = "06:30"\n')


def test_check_config_and_run_give_one_line_and_exit_nonzero(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text('[[arming.schedule]]\nstate = "disarmed"\nstart = "7pm"\n')
    assert cli.main(["check-config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "arming.schedule.0.start (line 3)" in err and "Traceback" not in err
    assert cli.main(["run", "--config", str(p), "--source", "demo"]) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "arming.schedule.0.start" in err and "Traceback" not in err


def test_days_shortcuts():
    cfg = arming_cfg('[[arming.schedule]]\nstate = "armed"\ndays = ["weekdays", "Saturday"]\n')
    assert cfg.schedule[0].days == ["mon", "tue", "wed", "thu", "fri", "sat"]


# ---- the state machine ------------------------------------------------------------------------

def test_schedule_disarms_at_night_and_every_change_is_recorded(tmp_path):
    a, clock = make(tmp_path)
    assert a.state == "armed" and a.schedule_state() == "armed"
    assert a.next_schedule_change() == at("2025-01-06 22:00")
    assert a.tick() is False
    clock.set("2025-01-06 22:00")
    assert a.tick() is True and a.state == "disarmed"
    clock.set("2025-01-07 06:59")
    assert a.tick() is False and a.state == "disarmed"
    clock.set("2025-01-07 07:00")
    assert a.tick() is True and a.state == "armed"
    hist = a.history()
    assert [(h["previous"], h["state"], h["by"]) for h in hist] == [
        ("disarmed", "armed", "schedule"), ("armed", "disarmed", "schedule")]


def test_weekdays_only():
    cfg = arming_cfg('[arming]\ndefault = "disarmed"\n[[arming.schedule]]\nstate = "armed"\ndays = ["weekdays"]\n')
    clock = Clock("2025-01-10 23:59")  # Friday
    a = Arming(cfg, clock=clock, tz=UTC)
    assert a.state == "armed"
    clock.set("2025-01-11 00:00")  # Saturday
    assert a.state == "disarmed" and a.next_schedule_change() == at("2025-01-13 00:00")


def test_change_by_hand_holds_until_the_schedules_next_change(tmp_path):
    a, clock = make(tmp_path, when="2025-01-06 23:00")
    assert a.state == "disarmed"
    snap = a.arm("mqtt")
    assert snap["state"] == "armed" and snap["mode"] == "armed" and snap["changed_by"] == "mqtt"
    clock.set("2025-01-07 06:59")
    assert a.tick() is False and a.state == "armed"
    clock.set("2025-01-07 07:00")  # the schedule's next change (to armed) ends the override
    assert a.tick() is True and a.snapshot()["mode"] == "schedule" and a.state == "armed"
    clock.set("2025-01-07 22:00")
    a.tick()
    assert a.state == "disarmed"  # and the schedule rules again
    a.disarm("web (127.0.0.1)")
    a.follow_schedule("web (127.0.0.1)")
    assert a.state == "disarmed" and a.snapshot()["mode"] == "schedule"


def test_without_a_schedule_a_change_holds(tmp_path):
    a, clock = make(tmp_path, text="")
    a.disarm("mqtt")
    clock.t += 30 * 86400
    assert a.tick() is False and a.state == "disarmed"


def test_mute_expires_on_the_injected_clock(tmp_path):
    a, clock = make(tmp_path, text="", mute_minutes=10)
    snap = a.mute("button")
    assert snap["state"] == "muted" and snap["armed"] and snap["mute_remaining_s"] == 600
    clock.t += 599
    assert a.tick() is False and a.state == "muted"
    clock.t += 1
    assert a.tick() is True and a.state == "armed"
    assert [h["by"] for h in a.history()] == ["mute expired", "button"]
    a.command("mute 2", "mqtt")
    assert a.snapshot()["mute_remaining_s"] == 120
    a.command("UNMUTE", "mqtt")
    assert a.state == "armed"


def test_commands():
    a = Arming(ArmingConfig(), clock=Clock("2025-01-06 12:00"), tz=UTC)
    for word, state in [("disarm", "disarmed"), ("arm", "armed"), ("OFF", "disarmed"), ("on", "armed"),
                        ("disarmed", "disarmed"), ("schedule", "armed"), ("mute", "muted")]:
        assert a.command(word, "t")["state"] == state, word
    for bad in ("", "open sesame", "mute forever", "mute 0", "arm now"):
        with pytest.raises(ValueError):
            a.command(bad, "t")


def test_state_survives_a_restart(tmp_path):
    a, clock = make(tmp_path, when="2025-01-06 12:00")
    a.disarm("web (10.0.0.2)")
    a.mute("mqtt", 30)
    a.close()
    path = tmp_path / "arming.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text())["override"]["state"] == "disarmed"
    b = Arming(arming_cfg(NIGHT), tmp_path, db_path=tmp_path / "events.sqlite3", clock=clock, tz=UTC)
    snap = b.snapshot()
    assert snap["state"] == "disarmed" and snap["changed_by"] == "mqtt" and snap["mute_remaining_s"] == 1800
    # Down past the override's end (the 22:00 change): the schedule rules at the start, recorded.
    b.close()
    clock.set("2025-01-07 08:00")
    c = Arming(arming_cfg(NIGHT), tmp_path, db_path=tmp_path / "events.sqlite3", clock=clock, tz=UTC)
    assert c.state == "armed" and c.snapshot()["mode"] == "schedule"
    assert c.history(1)[0]["by"] == "schedule"


def test_unreadable_state_file_starts_from_the_schedule(tmp_path, caplog):
    (tmp_path / "arming.json").write_text("{not json")
    a, _ = make(tmp_path, when="2025-01-06 23:00")
    assert a.state == "disarmed" and "unreadable" in caplog.text
    (tmp_path / "arming.json").write_text('{"override": {"state": "open"}}')
    a, _ = make(tmp_path, when="2025-01-06 12:00")
    assert a.state == "armed" and "not a state doorguard wrote" in caplog.text


# ---- through the runner -------------------------------------------------------------------------

def doorway():
    frames = [frame_with([])] * 3 + [frame_with([(20 + i, 30, 30, RED)]) for i in range(12)]
    frames += [frame_with([])] * 12 + [frame_with([(60 - i, 30, 30, BLUE)]) for i in range(12)]
    return frames


def runner(tmp_path, extra="", when="2025-01-06 12:00", **kw):
    det, clf = write_detector_manifest(tmp_path), write_classifier_manifest(tmp_path)
    (tmp_path / "d.toml").write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                                     f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                                     "[rules]\nglobal_cooldown_s = 0.0\n" + extra)
    cfg = config.load(tmp_path / "d.toml")
    kw.setdefault("actuators", FakeActuators())
    clock = Clock(when)
    r = service.Runner(cfg, source=kw.pop("source", ListSource(doorway())), notifier=FakeNotifier(),
                       detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter(), arming_clock=clock, arming_tz=UTC, **kw)
    return r, kw["actuators"], clock


def stored(tmp_path):
    with sqlite3.connect(tmp_path / "state" / "events.sqlite3") as db:
        return db.execute("SELECT verdict, alerted FROM events ORDER BY id").fetchall()


def test_disarmed_by_schedule_records_nothing_and_nothing_sounds(tmp_path):
    r, act, _ = runner(tmp_path, NIGHT, when="2025-01-06 23:30")
    assert r.run() == 0
    assert "alert" not in act.names() and "compliant" not in act.names()
    assert stored(tmp_path) == [] and r.events_by_verdict == {}


def test_disarmed_records_when_configured(tmp_path):
    r, act, _ = runner(tmp_path, "[arming]\nrecord_when_disarmed = true\n" + NIGHT, when="2025-01-06 23:30")
    assert r.run() == 0
    assert act.names() == ["close"]  # no alert, no green LED
    assert stored(tmp_path) == [("violation", 0), ("compliant", 0)]


def test_muted_records_and_mutes_the_outputs(tmp_path):
    (tmp_path / "state").mkdir()
    first = Arming(ArmingConfig(), tmp_path / "state", clock=Clock("2025-01-06 12:00"), tz=UTC)
    first.mute("button", 5)  # from before the restart
    r, act, _ = runner(tmp_path)
    assert r.run() == 0
    assert act.calls[0][0] == "mute" and act.calls[0][1] == pytest.approx(5.0)
    assert "alert" in act.names()  # the LEDs still show; the real Actuators keep the buzzer silent
    assert stored(tmp_path) == [("violation", 1), ("compliant", 1)]
    assert r._status()["arming"]["state"] == "muted"


def test_gpio_mute_button_mutes_through_arming(tmp_path):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    try:
        frames = [frame_with([])] * 20
        r, _, _ = runner(tmp_path, "[gpio]\nmute_button = 5\nmute_minutes = 3\n", source=ListSource(frames),
                         actuators=None, pin_factory=factory)
        parts = r.build_parts()
        try:
            r._start(parts)
            btn = factory.pin(5)
            btn.drive_low()
            btn.drive_high()
            assert parts.arming.state == "muted" and parts.actuators.muted
            assert parts.arming.history(1)[0]["by"] == "button"
            assert parts.arming.snapshot()["mute_remaining_s"] == 180
        finally:
            parts.close()
    finally:
        factory.close()


# ---- the web page ----------------------------------------------------------------------------------

@pytest.fixture
def page(tmp_path):
    pw = tmp_path / "web-password"
    write_password_file(pw, hash_password("correct horse", n=2**10))
    a, _ = make(tmp_path, text="")
    server = WebServer(WebConfig(port=0), status=lambda: {"arming": {**a.snapshot(), "history": a.history()}},
                       latest_frame=lambda: None, test_outputs=lambda: None, password_file=pw,
                       sys_root=tmp_path / "nosys",
                       arming=lambda action, who: a.command(action, by=f"web ({who})"))
    client = server.app.test_client()
    yield client, a
    a.close()


def _csrf(client) -> str:
    text = client.get("/status").get_data(as_text=True)
    j = text.index('name="csrf" value="', text.index('action="/arming"')) + len('name="csrf" value="')
    return text[j:text.index('"', j)]


def test_web_arming_buttons_need_login_and_csrf(page):
    client, a = page
    assert client.post("/arming", data={"action": "disarm"}).status_code == 401
    r = client.post("/login", data={"password": "correct horse", "next": "/status"})
    assert r.status_code == 302
    text = client.get("/status").get_data(as_text=True)
    assert 'id="arming-state"' in text and ">armed<" in text and 'id="arming-disarm"' in text
    assert client.post("/arming", data={"action": "disarm"}).status_code == 403  # no token
    assert client.post("/arming", data={"action": "disarm", "csrf": "forged"}).status_code == 403
    assert a.state == "armed"
    token = _csrf(client)
    assert client.post("/arming", data={"action": "explode", "csrf": token}).status_code == 400
    r = client.post("/arming", data={"action": "disarm", "csrf": token})
    assert r.status_code == 302 and "arming=ok" in r.headers["Location"]
    assert a.state == "disarmed" and a.history(1)[0]["by"].startswith("web (")
    text = client.get("/status").get_data(as_text=True)
    assert ">disarmed<" in text and 'id="arming-history"' in text
