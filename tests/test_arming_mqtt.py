"""Arming commands, the violation event and the last face as Home Assistant sees them, against
the real Mosquitto broker of tests/test_mqtt.py (same fixture; skips where it is absent)."""

from __future__ import annotations

import json
import time

import jinja2

from edge.decide.arming import Arming
from edge.settings.arming import ArmingConfig
from edge.act.hass import EVENT_TEMPLATE, HomeAssistantLink
from edge.act.mqtt.publisher import MqttPublisher

from test_arming import Clock, UTC, runner
from test_mqtt import DEVICE, PREFIX, Subscriber, broker, cfg_for, mqtt, wait_until  # noqa: F401 - fixture

DISC = "homeassistant"
UID = "doorguard_door-1"


def render(payload: dict) -> dict:
    """HA's value_template of the event entity, rendered the way HA's Jinja does (value_json)."""
    out = jinja2.Environment().from_string(EVENT_TEMPLATE).render(value_json=payload)
    return json.loads(out)


def configs(sub: Subscriber) -> dict[str, bytes]:
    return {t: p for t, p, _ in sub.msgs if t.startswith(f"{DISC}/")}


def publish(port: int, topic: str, payload: str, retain: bool = False) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-test-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def linked(tmp_path, port: int, cfg: ArmingConfig | None = None, **kw):
    arming = Arming(cfg or ArmingConfig(), tmp_path, db_path=tmp_path / "events.sqlite3",
                    clock=Clock("2025-01-06 12:00"), tz=UTC)
    pub = MqttPublisher(cfg_for(port, **kw), tmp_path / "events.sqlite3")
    link = HomeAssistantLink(pub, arming, event_types=["no_mask", "mask_incorrect"], snapshots=False)
    pub.start()
    assert wait_until(lambda: pub.connected, 5)
    return arming, pub, link


def test_commands_from_home_assistant_arm_disarm_mute(broker, tmp_path, caplog):
    sub = Subscriber(broker.port, [f"{PREFIX}/arming", f"{DISC}/#"])
    arming, pub, _ = linked(tmp_path, broker.port)
    try:
        cmd = f"{PREFIX}/arming/set"

        def last_state() -> dict:
            got = sub.on(f"{PREFIX}/arming")
            return json.loads(got[-1][0]) if got else {}

        assert wait_until(lambda: last_state().get("state") == "armed", 5)
        publish(broker.port, cmd, "disarm")  # the switch's payload_off
        assert wait_until(lambda: last_state().get("state") == "disarmed", 5), sub.on(f"{PREFIX}/arming")
        assert arming.state == "disarmed" and last_state()["changed_by"] == "mqtt"
        assert last_state()["mode"] == "disarmed"  # the select's state
        publish(broker.port, cmd, "schedule")  # the select's option
        publish(broker.port, cmd, "mute")  # the button's payload_press
        assert wait_until(lambda: last_state().get("state") == "muted", 5)
        publish(broker.port, cmd, "self-destruct")  # refused, logged
        publish(broker.port, cmd, "unmute")
        assert wait_until(lambda: last_state().get("state") == "armed", 5)
        assert [h["by"] for h in arming.history()] == ["mqtt"] * 4
        # A command published retained acts once (delivered live), never again on a reconnect.
        publish(broker.port, cmd, "disarm", retain=True)
        assert wait_until(lambda: arming.state == "disarmed", 5)
        arming.arm("test")
        pub.close()
        pub = MqttPublisher(cfg_for(broker.port), tmp_path / "events.sqlite3")
        HomeAssistantLink(pub, arming, event_types=["no_mask"], snapshots=False)
        pub.start()
        assert wait_until(lambda: pub.connected, 5)
        time.sleep(0.3)
        assert arming.state == "armed" and "ignored a retained message" in caplog.text
        publish(broker.port, cmd, "", retain=True)  # clear it on the broker
        # Retained state: a late subscriber (Home Assistant after a restart) sees it at once.
        late = Subscriber(broker.port, [f"{PREFIX}/arming"])
        assert wait_until(lambda: late.on(f"{PREFIX}/arming"), 3)
        assert late.on(f"{PREFIX}/arming")[-1][1] is True
        late.close()
        cfgs = configs(sub)
        switch = json.loads(cfgs[f"{DISC}/switch/{UID}_armed/config"])
        assert (switch["command_topic"], switch["payload_on"], switch["payload_off"]) == (cmd, "arm", "disarm")
        assert switch["state_topic"] == f"{PREFIX}/arming" and switch["availability_topic"] == f"{PREFIX}/availability"
        select = json.loads(cfgs[f"{DISC}/select/{UID}_arming_mode/config"])
        assert select["options"] == ["schedule", "armed", "disarmed"] and select["command_topic"] == cmd
        for key, word in (("mute", "mute"), ("unmute", "unmute")):
            button = json.loads(cfgs[f"{DISC}/button/{UID}_{key}/config"])
            assert button["payload_press"] == word and button["command_topic"] == cmd
        assert cfgs[f"{DISC}/image/{UID}_last_violation/config"] == b""  # snapshots off: removed
        for payload in cfgs.values():
            if payload:
                assert json.loads(payload)["device"]["identifiers"] == [UID]
    finally:
        pub.close()
        arming.close()
        sub.close()


def test_commands_can_be_turned_off(broker, tmp_path):
    sub = Subscriber(broker.port, [f"{DISC}/#"])
    arming, pub, _ = linked(tmp_path, broker.port, ArmingConfig(mqtt_commands=False))
    try:
        assert wait_until(lambda: f"{DISC}/sensor/{UID}_alarm_state/config" in configs(sub), 5)
        publish(broker.port, f"{PREFIX}/arming/set", "disarm")
        time.sleep(0.3)
        assert arming.state == "armed"
        assert configs(sub)[f"{DISC}/switch/{UID}_armed/config"] == b""
    finally:
        pub.close()
        arming.close()
        sub.close()


def test_doorway_run_gives_home_assistant_an_event_and_the_face(broker, tmp_path):
    sub = Subscriber(broker.port, [f"{PREFIX}/#", f"{DISC}/#"])
    extra = (f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\ndevice_name = "{DEVICE}"\n'
             "state_interval_s = 0.1\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n"
             "[events.snapshots]\nenabled = true\nmin_free_bytes = 0\n")
    r, _, _ = runner(tmp_path, extra)
    try:
        assert r.run() == 0
        assert wait_until(lambda: len(sub.events()) >= 2 and sub.on(f"{PREFIX}/snapshot"), 5)
    finally:
        sub.close()
    event_cfg = json.loads(configs(sub)[f"{DISC}/event/{UID}_violation_event/config"])
    assert event_cfg["state_topic"] == f"{PREFIX}/events"
    assert event_cfg["event_types"] == ["mask_incorrect", "no_mask"]
    fired = [render(e) for e in sub.events()]
    assert fired[1] == {}  # the compliant face: an empty dict, which HA ignores
    assert fired[0]["event_type"] == "no_mask" and fired[0]["track"] == sub.events()[0]["track"]
    assert set(fired[0]) == {"event_type", "label", "score", "track", "alerted", "id", "time"}
    assert fired[0]["event_type"] in event_cfg["event_types"]
    image_cfg = json.loads(configs(sub)[f"{DISC}/image/{UID}_last_violation/config"])
    assert image_cfg["image_topic"] == f"{PREFIX}/snapshot" and image_cfg["content_type"] == "image/jpeg"
    snaps = sorted((tmp_path / "state" / "snapshots").glob("*.jpg"))
    assert len(snaps) == 1
    img, retained = sub.on(f"{PREFIX}/snapshot")[-1]
    assert img == snaps[0].read_bytes() and img[:2] == b"\xff\xd8"
    info = json.loads(sub.on(f"{PREFIX}/snapshot/info")[-1][0])
    assert info["label"] == "no_mask" and info["store_id"] == sub.events()[0]["store_id"]
    arming = json.loads(sub.on(f"{PREFIX}/arming")[-1][0])
    assert arming["state"] == "armed"


def test_event_template_ignores_what_was_recorded_while_disarmed():
    base = {"verdict": "violation", "label": "No_Mask", "score": 0.9, "track": 3, "alerted": False,
            "id": "x", "time": "t"}
    assert render({**base, "arming": "disarmed"}) == {}
    assert render({**base, "arming": "muted"})["event_type"] == "no_mask"
    assert render(base)["event_type"] == "no_mask"  # messages from before this field existed
