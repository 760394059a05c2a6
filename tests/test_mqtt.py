"""MQTT publishing against a real Mosquitto broker on a loopback port.

The broker is Debian's ``mosquitto`` (scripts/sysdeps.sh installs it for
``make test``); tests that need it skip with a reason where it is absent. Every
wait is bounded; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.act.mqtt.discovery import discovery_configs
from edge.act.mqtt.payloads import event_payload, node_id
from edge.act.mqtt.publisher import MqttPublisher
from edge.settings.mqtt import MqttConfig
from edge.types import Box, Event

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
DEVICE = "door-1"
PREFIX = "doorguard/door-1"

#: Outage-test figures, printed at the end of the module (run with -s to see them).
FIGURES: dict[str, dict[str, int]] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Broker:
    """One mosquitto process with a config in a temp dir; start/stop keep the port and persistence."""

    def __init__(self, tmp: Path, port: int, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path, Path] | None = None):
        self.dir = tmp
        self.port = port
        self.log = tmp / "mosquitto.log"
        lines = [
            f"listener {port} 127.0.0.1",
            *([f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"] if tls else []),
            # Persistence lets the test subscriber's session (and its queued
            # QoS 1 messages) survive the broker restart in the outage test.
            "persistence true",
            f"persistence_location {tmp}/",
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            # Started as root, mosquitto would switch to user "mosquitto" and lose the temp dir.
            f"user {getpass.getuser()}",
        ]
        if users:
            pw = tmp / "passwd"
            pw.touch(mode=0o600)
            for u, p in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), u, p], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def up() -> bool:
            if self.proc.poll() is not None:
                return True
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        ok = wait_until(up, 10.0, 0.05)
        if self.proc.poll() is not None or not ok:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start on port {self.port}: {err} {log[-800:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # clean stop: mosquitto saves its persistence file
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _need_mosquitto():
    if MOSQUITTO is None:
        pytest.skip("needs Debian's mosquitto broker (apt-get install mosquitto; `make test` installs it)")


@pytest.fixture
def broker(tmp_path):
    _need_mosquitto()
    d = tmp_path / "broker"
    d.mkdir()
    b = Broker(d, free_port())
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A real paho client recording every message it gets (topic, payload, retain)."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None, clean: bool = True,
                 username: str | None = None, password: str | None = None, tls_ca: Path | None = None):
        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        kw = {"client_id": client_id or f"test-sub-{os.getpid()}-{id(self)}", "clean_session": clean,
              "protocol": mqtt.MQTTv311}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
        if username:
            self.c.username_pw_set(username, password)
        if tls_ca:
            self.c.tls_set(ca_certs=str(tls_ca))
        self.c.reconnect_delay_set(0.05, 0.3)

        def on_connect(c, u, flags, rc, props=None):
            if not rc.is_failure:
                for t in topics:
                    c.subscribe(t, qos=1)
                self.connected.set()

        def on_disconnect(c, u, flags, rc, props=None):
            self.connected.clear()

        def on_message(c, u, m):
            with self.lock:
                self.msgs.append((m.topic, m.payload, bool(m.retain)))

        self.c.on_connect, self.c.on_disconnect, self.c.on_message = on_connect, on_disconnect, on_message
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.connected.wait(5), "test subscriber could not connect"
        time.sleep(0.1)  # SUBACK

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.msgs if t == topic]

    def events(self) -> list[dict]:
        return [json.loads(p) for p, _ in self.on(f"{PREFIX}/events")]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def cfg_for(port: int, **kw) -> MqttConfig:
    base = dict(enabled=True, host="127.0.0.1", port=port, device_name=DEVICE,
                reconnect_min_s=0.1, reconnect_max_s=0.5, state_interval_s=0.2)
    base.update(kw)
    return MqttConfig(**base)


def ev(i: int, verdict: str = "violation", label: str = "no_mask") -> Event:
    return Event(1_700_000_000.0 + i, i, verdict, label, 0.9, Box(10, 20, 110, 140), True)


HASHES = {"detector": "d" * 64, "classifier": "c" * 64}


def outbox_states(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())


def dedupe(events: list[dict]) -> tuple[list[int], int]:
    """First-seen order of store ids and how many messages were duplicates."""
    seen: list[int] = []
    dup = 0
    for e in events:
        if e["store_id"] in seen:
            dup += 1
        else:
            seen.append(e["store_id"])
    return seen, dup


# ---- config and payloads (no broker) --------------------------------------------------

def test_config_defaults_and_validation():
    c = MqttConfig()
    assert (c.enabled, c.qos, c.discovery_prefix, c.port, c.topic_prefix) == (False, 1, "homeassistant", None, None)
    for name, f in MqttConfig.model_fields.items():
        assert f.description, f"mqtt.{name} has no description"
    with pytest.raises(ValidationError):
        MqttConfig(hostname="x")  # extra="forbid"
    with pytest.raises(ValidationError):
        MqttConfig(password_file="/x")  # a password needs a user
    with pytest.raises(ValidationError):
        MqttConfig(topic_prefix="a/+/b")
    assert MqttConfig(topic_prefix="/site/door/").topic_prefix == "site/door"
    assert node_id("pi.door 1") == "pi_door_1"
    p = MqttPublisher(MqttConfig(), "/nonexistent.sqlite3", device_name="pi.door 1")
    assert p.prefix == "doorguard/pi_door_1" and p.client_id == "doorguard-pi_door_1"
    p2 = MqttPublisher(MqttConfig(tls={"enabled": True}), "/x")
    assert p2._port() == 8883 and MqttPublisher(MqttConfig(), "/x")._port() == 1883


def test_password_file_readable_by_everyone_is_refused(tmp_path, caplog):
    """The MQTT password file's mode was never checked (issue 17): 0644 is refused, saying so;
    0640 with the service's own group (the README's setup) and 0600 are used."""
    import os

    from edge.act.mqtt.client import password_file_problem

    secret = tmp_path / "mqtt.pass"
    secret.write_text("Sup3r-S3cret\n")
    secret.chmod(0o644)
    level, why = password_file_problem(secret)
    assert level == "error" and "open to every user" in why and "mode 0644" in why and "chmod o-rwx" in why
    caplog.set_level(logging.INFO, logger="doorguard.mqtt")
    pub = MqttPublisher(cfg_for(free_port(), username="doorguard", password_file=str(secret)),
                        tmp_path / "events.sqlite3").start()
    try:
        assert pub._client is None  # never connects with it; events still queue
        assert pub.enqueue(ev(1), store_id=1)
    finally:
        pub.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("open to every user" in m and str(secret) in m for m in errors), errors
    assert all("Sup3r" not in r.getMessage() for r in caplog.records)
    secret.chmod(0o602)
    assert password_file_problem(secret)[0] == "error"  # writable by others: anyone could swap it
    secret.chmod(0o640)
    os.chown(secret, -1, os.getegid())
    assert password_file_problem(secret) is None
    secret.chmod(0o600)
    assert password_file_problem(secret) is None
    assert password_file_problem(tmp_path / "absent") is None  # reading it says what is wrong


def test_event_payload_from_event_and_store_row():
    p = event_payload(ev(7), "door-1", store_id=42, model_hashes=HASHES)
    assert p["store_id"] == 42 and p["track"] == 7 and p["verdict"] == "violation" and p["label"] == "no_mask"
    assert p["box"] == [10, 20, 110, 140] and p["models"] == HASHES and p["score"] == 0.9
    assert p["time"].startswith("2023-11-14T22:13:27") and p["timestamp"] == 1_700_000_007.0
    assert re.fullmatch(r"[0-9a-f]{32}", p["id"])
    row = {"id": 3, "time": 5.0, "track": 2, "verdict": "compliant", "label": "mask", "score": 0.8,
           "x1": 1, "y1": 2, "x2": 3, "y2": 4, "alerted": 0, "source": "classifier",
           "detector_sha256": "aa", "classifier_sha256": "bb", "snapshot": None}
    q = event_payload(row, "door-1")
    assert q["store_id"] == 3 and q["box"] == [1, 2, 3, 4] and q["models"] == {"detector": "aa", "classifier": "bb"}
    assert q["id"] != p["id"]
    # The service's Event.time is monotonic: the frame's wall time is passed instead.
    assert event_payload(ev(1), "d", wall_time=0.0)["time"] == "1970-01-01T00:00:00.000+00:00"


def test_outbox_cap_drops_oldest_and_counts(tmp_path, caplog):
    db = tmp_path / "events.sqlite3"
    port = free_port()  # nothing listens: events can only queue
    with MqttPublisher(cfg_for(port, outbox_cap=5), db) as pub:
        for i in range(12):
            assert pub.enqueue(ev(i), store_id=i)
        assert not pub.enqueue(ev(3), store_id=11)  # same store id: queued once
        assert wait_until(lambda: pub.stats()["pending"] == 5, 5)  # the sender thread trims
        s = pub.stats()
        assert (s["pending"], s["dropped"], s["dropped_total"]) == (5, 7, 7)
    with sqlite3.connect(db) as c:
        assert [r[0] for r in c.execute("SELECT event_id FROM outbox ORDER BY seq")] == ["7", "8", "9", "10", "11"]
    assert any("outbox full" in r.getMessage() for r in caplog.records)
    # The drop count survives a restart.
    with MqttPublisher(cfg_for(port, outbox_cap=5), db) as pub:
        assert pub.stats()["dropped_total"] == 7 and pub.stats()["pending"] == 5


def test_outbox_trim_never_runs_on_the_frame_loop(tmp_path):
    """300,000 queued events and outbox_cap 10,000: trimming inside enqueue stalled the frame loop
    for 0.7-1.1 s. Enqueue only inserts; the sender thread trims in small batches."""
    db = tmp_path / "events.sqlite3"
    port = free_port()
    with MqttPublisher(cfg_for(port), db):
        pass  # creates the outbox table
    n = 300_000
    with sqlite3.connect(db) as c:
        c.executemany("INSERT INTO outbox (event_id, payload, verdict, created) VALUES (?, '{}', 'violation', 0)",
                      ((f"old-{i}",) for i in range(n)))
    with MqttPublisher(cfg_for(port, outbox_cap=10_000), db) as pub:
        worst = 0.0
        for i in range(50):
            t0 = time.perf_counter()
            assert pub.enqueue(ev(i), store_id=i)
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
        assert wait_until(lambda: pub.stats()["pending"] <= 10_000, 60)
        assert pub.stats()["dropped"] == n + 50 - 10_000
    print(f"\nslowest enqueue while trimming {n} rows: {worst * 1000:.1f} ms")
    assert worst < 0.25, f"enqueue took {worst:.2f} s: the trim ran on the caller's thread"
    with sqlite3.connect(db) as c:
        kept = [r[0] for r in c.execute("SELECT event_id FROM outbox ORDER BY seq DESC LIMIT 50")]
    assert kept == [str(i) for i in reversed(range(50))]  # the newest are kept


def test_acknowledged_rows_are_pruned_after_two_days(tmp_path):
    db = tmp_path / "events.sqlite3"
    now = [1_700_000_000.0]
    with MqttPublisher(cfg_for(free_port()), db, clock=lambda: now[0]) as pub:
        for i in range(3):
            pub.enqueue(ev(i), store_id=i)
    with sqlite3.connect(db) as c:  # as if the broker had acknowledged 0 and 1
        c.execute("UPDATE outbox SET state='acked', acked_at=? WHERE event_id IN ('0', '1')", (now[0],))
    now[0] += 2 * 86400 + 1
    with MqttPublisher(cfg_for(free_port()), db, clock=lambda: now[0]) as pub:
        assert pub.stats()["pending"] == 1
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT event_id, state FROM outbox").fetchall() == [("2", "queued")]


def test_enqueue_never_checkpoints_the_sender_does(tmp_path, monkeypatch):
    """WAL checkpoints fsync; they must happen on the sender thread, not in enqueue (the frame loop)."""
    import edge.act.mqtt.publisher as m

    def fill(db: Path, wait: float) -> tuple[int, bool]:
        with MqttPublisher(cfg_for(free_port()), db) as pub:
            for i in range(400):  # ~4 WAL pages each: past SQLite's default autocheckpoint (1000)
                pub.enqueue(ev(i), store_id=i)
            size = db.stat().st_size  # the main file grows only when a checkpoint copies pages in
            checkpointed = wait_until(lambda: db.stat().st_size > 150_000, wait)
        return size, checkpointed

    monkeypatch.setattr(m, "CHECKPOINT_EVERY_S", 1e9)
    size, checkpointed = fill(tmp_path / "a.sqlite3", 0.5)
    assert size < 100_000 and not checkpointed
    monkeypatch.setattr(m, "CHECKPOINT_EVERY_S", 0.1)
    size, checkpointed = fill(tmp_path / "b.sqlite3", 3)
    assert checkpointed


def test_outbox_creates_its_directory_or_fails_as_state_error(tmp_path):
    from edge.errors import StateError

    db = tmp_path / "new" / "state" / "events.sqlite3"  # [events] off: nobody made the directory
    with MqttPublisher(cfg_for(free_port()), db) as pub:
        assert pub.enqueue(ev(1), store_id=1)
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="outbox"):
        MqttPublisher(cfg_for(free_port()), tmp_path / "file" / "x.sqlite3").start()


# ---- against a real broker ---------------------------------------------------------------

def test_events_state_and_availability_arrive(broker, tmp_path):
    sub = Subscriber(broker.port, [f"{PREFIX}/#"])
    db = tmp_path / "events.sqlite3"
    pub = MqttPublisher(cfg_for(broker.port), db).start()
    try:
        pub.enqueue(ev(1), store_id=1, model_hashes=HASHES)
        pub.enqueue(ev(2, "compliant", "mask"), store_id=2, model_hashes=HASHES)
        pub.update_state({"fps": 12.5, "camera_ok": True})
        assert wait_until(lambda: len(sub.events()) >= 2, 5)
        e1, e2 = sub.events()
        assert (e1["store_id"], e1["verdict"], e1["label"], e1["track"]) == (1, "violation", "no_mask", 1)
        assert (e2["store_id"], e2["verdict"], e2["label"]) == (2, "compliant", "mask")
        for e in (e1, e2):
            assert set(e) >= {"id", "time", "verdict", "label", "score", "track", "models", "device"}
            assert e["models"] == HASHES and e["device"] == DEVICE
        assert e1["id"] != e2["id"]
        assert wait_until(lambda: sub.on(f"{PREFIX}/availability"), 3)
        assert sub.on(f"{PREFIX}/availability")[-1][0] == b"online"

        def last_state():
            s = sub.on(f"{PREFIX}/state")
            return json.loads(s[-1][0]) if s else {}

        assert wait_until(lambda: last_state().get("fps") == 12.5 and last_state().get("outbox_pending") == 0, 3)
        st = last_state()
        assert st["camera_ok"] is True and st["violations_today"] >= 1 and st["last_event_time"] == e2["time"]
        assert wait_until(lambda: outbox_states(db) == {"acked": 2}, 3)
        # Rate limit: 200 updates in a burst give a handful of messages, not 200.
        n0 = len(sub.on(f"{PREFIX}/state"))
        for i in range(200):
            pub.update_state({"fps": float(i)})
        assert wait_until(lambda: last_state().get("fps") == 199.0, 3)
        assert len(sub.on(f"{PREFIX}/state")) - n0 <= 5
    finally:
        pub.close()
    # A clean close says offline (retained), the Last Will covers a crash.
    assert wait_until(lambda: sub.on(f"{PREFIX}/availability")[-1][0] == b"offline", 3)
    sub.close()
    # Retained: a late subscriber (Home Assistant after a restart) sees state and availability.
    late = Subscriber(broker.port, [f"{PREFIX}/#"])
    assert wait_until(lambda: late.on(f"{PREFIX}/state") and late.on(f"{PREFIX}/availability"), 3)
    assert all(r for _, r in late.on(f"{PREFIX}/state")) and late.on(f"{PREFIX}/availability")[0] == (b"offline", True)
    assert late.on(f"{PREFIX}/events") == []  # events are not retained
    late.close()


def test_discovery_payloads_have_home_assistant_fields(broker, tmp_path):
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders HA's value_template here")
    sub = Subscriber(broker.port, ["homeassistant/#", f"{PREFIX}/#"])
    pub = MqttPublisher(cfg_for(broker.port), tmp_path / "events.sqlite3").start()
    try:
        expected = discovery_configs(node_id(DEVICE), DEVICE, PREFIX, "homeassistant")
        assert wait_until(lambda: all(sub.on(t) for t in expected), 5)
        pub.enqueue(ev(1), store_id=1, model_hashes=HASHES)
        pub.update_state({"fps": 9.5, "camera_ok": False})
        assert wait_until(lambda: sub.events() and any(b'"fps":9.5' in p.replace(b" ", b"")
                                                       for p, _ in sub.on(f"{PREFIX}/state")), 5)
    finally:
        pub.close()
    event_json = sub.events()[0]
    state_json = next(json.loads(p) for p, _ in reversed(sub.on(f"{PREFIX}/state")) if b"9.5" in p)
    comps = {}
    uids = set()
    env = jinja2.Environment()
    # A subscriber arriving later (Home Assistant restarting) gets every config as retained.
    late = Subscriber(broker.port, ["homeassistant/#"])
    assert wait_until(lambda: all(late.on(t) for t in expected), 3)
    for topic in expected:
        (payload, retained), = late.on(topic)
        assert retained, f"{topic} must be retained"
        cfg = json.loads(payload)
        m = re.fullmatch(r"homeassistant/(binary_sensor|sensor)/([A-Za-z0-9_-]+)/config", topic)
        assert m, topic
        comp, object_id = m.groups()
        comps[cfg["unique_id"]] = comp
        # HA: the object id in the topic should be the unique_id; unique_ids unique.
        assert object_id == cfg["unique_id"] and cfg["unique_id"] not in uids
        uids.add(cfg["unique_id"])
        assert cfg["name"] and cfg["state_topic"] in (f"{PREFIX}/events", f"{PREFIX}/state")
        assert cfg["availability_topic"] == f"{PREFIX}/availability"
        assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")
        dev = cfg["device"]
        assert set(dev) >= {"identifiers", "name", "model", "manufacturer", "sw_version"}
        assert dev["identifiers"] == [f"doorguard_{node_id(DEVICE)}"]
        assert cfg["origin"]["name"] == "doorguard"
        if comp == "binary_sensor":
            assert (cfg["payload_on"], cfg["payload_off"]) == ("ON", "OFF")
            assert cfg["device_class"] in {"safety", "problem"}
        if "unit_of_measurement" in cfg or "state_class" in cfg:
            assert comp == "sensor" and cfg["state_class"] in {"measurement", "total", "total_increasing"}
        # The value_template renders to what the entity expects, on the real messages.
        src = event_json if cfg["state_topic"].endswith("/events") else state_json
        value = env.from_string(cfg["value_template"]).render(value_json=src, value=json.dumps(src))
        cfg["_rendered"] = value
        if comp == "binary_sensor":
            assert value in (cfg["payload_on"], cfg["payload_off"])
        else:
            float(value)
        if cfg["unique_id"].endswith("_violation"):
            assert value == "ON" and cfg["json_attributes_topic"] == f"{PREFIX}/events"
        if cfg["unique_id"].endswith("_camera_problem"):
            assert value == "ON"  # camera_ok False is a problem
            render = env.from_string(cfg["value_template"]).render
            # Before the first report HA must show unknown ("None"), not a problem.
            assert [render(value_json={"camera_ok": v}) for v in (True, None)] == ["OFF", "None"]
            assert render(value_json={}) == "None"
        if cfg["unique_id"].endswith("_fps"):
            assert value == "9.5"
    assert sorted(comps.values()) == ["binary_sensor", "binary_sensor", "sensor", "sensor", "sensor"]
    sub.close()
    late.close()


def test_broker_outage_every_event_once_in_order(broker, tmp_path):
    """Events keep happening while the broker is stopped for 2 s and restarted."""
    # A persistent session: messages the broker holds for the subscriber survive the restart.
    sub = Subscriber(broker.port, [f"{PREFIX}/events"], client_id="outage-sub", clean=False)
    db = tmp_path / "events.sqlite3"
    pub = MqttPublisher(cfg_for(broker.port), db).start()
    assert wait_until(lambda: pub.connected, 5)
    n_sent = 0
    enqueue_worst = 0.0
    stop = threading.Event()

    def producer():
        nonlocal n_sent, enqueue_worst
        while not stop.is_set() and n_sent < 400:
            t0 = time.perf_counter()
            pub.enqueue(ev(n_sent), store_id=n_sent, model_hashes=HASHES)
            enqueue_worst = max(enqueue_worst, time.perf_counter() - t0)
            n_sent += 1
            time.sleep(0.01)

    th = threading.Thread(target=producer)
    th.start()
    try:
        time.sleep(0.6)
        broker.stop()
        down_at = n_sent
        time.sleep(2.0)
        during = n_sent - down_at
        broker.start()
        time.sleep(0.8)
        stop.set()
        th.join(5)
        assert wait_until(lambda: len(dedupe(sub.events())[0]) >= n_sent, 20), \
            f"delivered {len(dedupe(sub.events())[0])}/{n_sent}"
        assert wait_until(lambda: outbox_states(db) == {"acked": n_sent}, 5), outbox_states(db)
    finally:
        stop.set()
        pub.close()
        sub.close()
    order, dup = dedupe(sub.events())
    assert order == list(range(n_sent)), "events out of order or missing"
    assert during > 20, "the producer must have run while the broker was down"
    # Duplicates are allowed by QoS 1 (and counted); ids make them harmless.
    FIGURES["broker outage"] = {"sent": n_sent, "during_outage": during, "delivered_unique": len(order),
                                "duplicates": dup, "messages": len(sub.events())}
    print(f"\nMQTT broker outage: {FIGURES['broker outage']}; worst enqueue {enqueue_worst * 1e3:.1f} ms")


KILL_SCRIPT = r"""
import sys, time
from edge.act.mqtt.publisher import MqttPublisher
from edge.settings.mqtt import MqttConfig
from edge.types import Box, Event
port, db, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cfg = MqttConfig(enabled=True, host="127.0.0.1", port=port, device_name="door-1",
                 reconnect_min_s=0.1, reconnect_max_s=0.5)
pub = MqttPublisher(cfg, db).start()
for i in range(n):
    pub.enqueue(Event(1.7e9 + i, i, "violation", "no_mask", 0.9, Box(1, 2, 3, 4), True), store_id=i)
print("queued", flush=True)
time.sleep(60)
"""


def test_killed_while_broker_down_then_restarted_delivers_queue(tmp_path):
    _need_mosquitto()
    d = tmp_path / "broker"
    d.mkdir()
    b = Broker(d, free_port())  # not started: the broker is down
    db = tmp_path / "events.sqlite3"
    n = 25
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(b.port), str(db), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"queued", proc.stderr.read().decode(errors="replace")[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no close(), no flush
        proc.wait(5)
    assert outbox_states(db) == {"queued": n}
    b.start()
    sub = Subscriber(b.port, [f"{PREFIX}/events"])
    pub = MqttPublisher(cfg_for(b.port), db).start()
    try:
        assert wait_until(lambda: len(dedupe(sub.events())[0]) >= n, 10)
        assert wait_until(lambda: outbox_states(db) == {"acked": n}, 5)
    finally:
        pub.close()
        sub.close()
        b.stop()
    order, dup = dedupe(sub.events())
    assert order == list(range(n))
    FIGURES["kill -9 while broker down"] = {"sent": n, "delivered_unique": len(order), "duplicates": dup}
    print(f"\nMQTT kill -9 then restart: {FIGURES['kill -9 while broker down']}")


def test_wrong_password_logs_once_and_keeps_queueing(tmp_path, caplog):
    _need_mosquitto()
    if MOSQUITTO_PASSWD is None:
        pytest.skip("needs mosquitto_passwd (Debian's mosquitto package)")
    d = tmp_path / "broker"
    d.mkdir()
    b = Broker(d, free_port(), users={"doorguard": "right-horse-battery"})
    b.start()
    secret = tmp_path / "mqtt.pass"
    secret.write_text("Wr0ng-S3cret!\n")
    secret.chmod(0o600)  # one every user could read is refused (test below)
    db = tmp_path / "events.sqlite3"
    caplog.set_level(logging.INFO, logger="doorguard.mqtt")
    try:
        pub = MqttPublisher(cfg_for(b.port, username="doorguard", password_file=str(secret)), db).start()
        t0 = time.perf_counter()
        for i in range(20):
            assert pub.enqueue(ev(i), store_id=i)
        took = time.perf_counter() - t0
        time.sleep(1.5)  # several refused attempts at 0.1-0.5 s back-off
        s = pub.stats()
        pub.close()
        assert took < 1.0, f"enqueue must not wait on the network ({took:.2f} s for 20)"
        assert s["pending"] == 20 and s["acked"] == 0 and outbox_states(db) == {"queued": 20}
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 1, [r.getMessage() for r in caplog.records]
        msg = refused[0].getMessage()
        assert refused[0].levelno == logging.ERROR and "password" in msg.lower() and str(b.port) in msg
        assert all("Wr0ng" not in r.getMessage() for r in caplog.records)
        # Fixed password: the queued events go out.
        secret.write_text("right-horse-battery\n")
        sub = Subscriber(b.port, [f"{PREFIX}/events"], username="doorguard", password="right-horse-battery")
        with MqttPublisher(cfg_for(b.port, username="doorguard", password_file=str(secret)), db):
            assert wait_until(lambda: len(dedupe(sub.events())[0]) >= 20, 10)
        assert dedupe(sub.events())[0] == list(range(20))
        sub.close()
    finally:
        b.stop()


def test_tls_towards_plain_listener_logs_once_and_keeps_queueing(broker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="doorguard.mqtt")
    db = tmp_path / "events.sqlite3"
    # TLS towards a plain listener (a port mix-up): the handshake fails on every attempt.
    pub = MqttPublisher(cfg_for(broker.port, tls={"enabled": True}), db).start()
    try:
        t0 = time.perf_counter()
        for i in range(10):
            pub.enqueue(ev(i), store_id=i)
        took = time.perf_counter() - t0
        assert wait_until(lambda: any("TLS" in r.getMessage() for r in caplog.records), 5)
        time.sleep(1.0)
        assert took < 1.0 and pub.stats()["pending"] == 10 and not pub.connected
    finally:
        pub.close()
    tls = [r for r in caplog.records if "TLS" in r.getMessage()]
    assert len(tls) == 1 and tls[0].levelno == logging.ERROR, [r.getMessage() for r in caplog.records]
    assert str(broker.port) in tls[0].getMessage()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d: Path) -> dict[str, Path]:
    """A test CA, a broker certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
                 "-subj", f"/CN=doorguard test {name}", cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return {"ca": d / "ca.crt", "other-ca": d / "other-ca.crt", "server": d / "server.crt",
            "server_key": d / "server.key"}


def test_tls_wrong_ca_fails_clearly_right_ca_delivers(tmp_path, caplog):
    _need_mosquitto()
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path / "broker"
    d.mkdir()
    certs = make_certs(d)
    b = Broker(d, free_port(), tls=(certs["ca"], certs["server"], certs["server_key"]))
    b.start()
    caplog.set_level(logging.INFO, logger="doorguard.mqtt")
    db = tmp_path / "events.sqlite3"
    try:
        wrong = MqttPublisher(cfg_for(b.port, tls={"enabled": True, "ca_file": str(certs["other-ca"])}), db)
        wrong.start()
        for i in range(5):
            wrong.enqueue(ev(i), store_id=i)
        assert wait_until(lambda: any("TLS" in r.getMessage() for r in caplog.records), 5)
        time.sleep(0.8)
        wrong.close()
        tls = [r for r in caplog.records if "TLS" in r.getMessage()]
        assert len(tls) == 1 and "CERTIFICATE_VERIFY_FAILED" in tls[0].getMessage(), \
            [r.getMessage() for r in caplog.records]
        assert outbox_states(db) == {"queued": 5}
        # The right CA: the queued events go out over TLS.
        sub = Subscriber(b.port, [f"{PREFIX}/events"], tls_ca=certs["ca"])
        with MqttPublisher(cfg_for(b.port, tls={"enabled": True, "ca_file": str(certs["ca"])}), db):
            assert wait_until(lambda: len(dedupe(sub.events())[0]) >= 5, 10)
        assert dedupe(sub.events())[0] == list(range(5))
        sub.close()
    finally:
        b.stop()


# ---- through `doorguard run`'s loop (edge/service.py wiring) ---------------------------

def _doorway_runner(tmp_path, port: int, frames, source=None, extra: str = "", **kw):
    from edge.fakes import (BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators, FakeNotifier,
                            ListSource, write_classifier_manifest, write_detector_manifest)

    from edge import config, service

    det, clf = write_detector_manifest(tmp_path), write_classifier_manifest(tmp_path)
    text = (f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
            f'[events]\nstate_dir = "{tmp_path / "state"}"\n[rules]\nglobal_cooldown_s = 0.0\n'
            f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ndevice_name = "{DEVICE}"\n'
            "state_interval_s = 0.1\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n" + extra)
    (tmp_path / "doorguard.toml").write_text(text)
    cfg = config.load(tmp_path / "doorguard.toml")
    return service.Runner(cfg, source=source or ListSource(frames), actuators=FakeActuators(),
                          notifier=FakeNotifier(), detector_interpreter=BlobDetectorInterpreter(),
                          classifier_interpreter=ColourClassifierInterpreter(), **kw)


def test_doorway_run_publishes_the_events_it_stores(broker, tmp_path):
    """A violating then a compliant face: both stored, both published in order, outbox all acked."""
    from edge.fakes import BLUE, RED, frame_with

    frames = [frame_with([])] * 3 + [frame_with([(20 + i, 30, 30, RED)]) for i in range(12)]
    frames += [frame_with([])] * 12 + [frame_with([(60 - i, 30, 30, BLUE)]) for i in range(12)]
    sub = Subscriber(broker.port, [f"{PREFIX}/#"])
    r = _doorway_runner(tmp_path, broker.port, frames)
    try:
        assert r.run() == 0
        assert wait_until(lambda: len(sub.events()) >= 2, 5)
    finally:
        sub.close()
    db = tmp_path / "state" / "events.sqlite3"
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT id, verdict, label, detector_sha256 FROM events ORDER BY id").fetchall()
    got = [(e["store_id"], e["verdict"], e["label"], e["models"]["detector"]) for e in sub.events()]
    assert got == [tuple(row) for row in rows] and [g[1] for g in got] == ["violation", "compliant"]
    assert outbox_states(db) == {"acked": 2}
    assert sub.on(f"{PREFIX}/availability")[-1][0] == b"offline"  # closed with the run


def test_doorway_run_reports_a_lost_camera_in_state(broker, tmp_path):
    """While the camera is lost no frame arrives; the retained state must still say camera_ok false."""
    from edge.fakes import ListSource, frame_with

    src = ListSource([frame_with([])] * 300, live=True)  # runs dry after ~0.6 s: lost for good
    extra = "[source]\nreconnect_initial_s = 0.05\nreconnect_max_s = 0.1\ngive_up_after_s = 1.5\n"
    sub = Subscriber(broker.port, [f"{PREFIX}/state"])
    r = _doorway_runner(tmp_path, broker.port, [], source=src, extra=extra)
    from edge.errors import SourceError

    try:
        with pytest.raises(SourceError):
            r.run()
    finally:
        sub.close()
    states = [json.loads(p) for p, _ in sub.on(f"{PREFIX}/state")]
    assert any(s.get("camera_ok") is True for s in states), states
    assert states and states[-1]["camera_ok"] is False, states


def teardown_module(module):
    if FIGURES:
        print("\nMQTT outage figures:", json.dumps(FIGURES))
