"""Events leave the device: MQTT publishing with a store-and-forward outbox.

Every event is first written to the SQLite event store (edge/events.py). The
publisher then adds it to its own ``outbox`` table in the same database file
(WAL) and returns at once; a sender thread publishes queued rows in order with
QoS 1 and marks a row acknowledged only when the broker's PUBACK arrives. A
broker that is down, a wrong password or a TLS failure never reaches the frame
loop: events wait in the outbox (bounded by ``outbox_cap``, oldest dropped past
it and counted) and go out in order once a connection is made, even after a
restart of the process.

Topics (``<prefix>`` defaults to ``doorguard/<device>``):

    <prefix>/availability   online / offline, retained; the Last Will says offline
    <prefix>/events         one JSON object per event (QoS 1, not retained)
    <prefix>/state          retained JSON: fps, camera_ok, last_event_time, violations_today ...
    homeassistant/<component>/<unique_id>/config
                            Home Assistant MQTT discovery (retained): a violation
                            binary_sensor, violations-today and fps sensors, a
                            camera-problem binary_sensor and an outbox sensor,
                            all on one device.

Delivery is at least once: a PUBACK lost in a disconnect makes the event go out
again after the reconnect (flagged DUP). Every event carries a unique ``id``;
consumers that must not count twice dedupe on it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import queue
import re
import socket
import sqlite3
import ssl
import stat
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .settings.mqtt import MqttConfig, MqttTlsConfig  # noqa: F401 - old import path

log = logging.getLogger("doorguard.mqtt")

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- publish order
    event_id TEXT NOT NULL UNIQUE,           -- the event store's row id (or a uuid): enqueue is idempotent
    payload TEXT NOT NULL,                   -- the JSON published on <prefix>/events
    verdict TEXT,
    created REAL NOT NULL,                   -- unix time the row was queued
    state TEXT NOT NULL DEFAULT 'queued',    -- queued | sent (handed to the client) | acked (PUBACK seen)
    sent_at REAL,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, seq);
CREATE TABLE IF NOT EXISTS outbox_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: Acknowledged rows are kept this long (they feed "violations today" after a
#: restart), then deleted; the event store keeps the events themselves.
ACKED_KEEP_S = 2 * 86400.0

#: Past outbox_cap the sender deletes the oldest unsent rows this many per transaction.
TRIM_BATCH = 200

#: The sender thread checkpoints the WAL this often (the enqueue connection never does).
CHECKPOINT_EVERY_S = 5.0

#: HA discovery and MQTT topic levels allow only these characters in ids.
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def password_file_problem(path: Path) -> tuple[str, str] | None:
    """What is wrong with the MQTT password file's permissions, if anything.

    Returns:
        ``("error", why)`` when every user may read (or write) it: doorguard refuses to
        use it; ``("warning", why)`` when a group this process is not in may read it;
        None when it is private to the service (the README's ``0640 root:doorguard``
        included), or absent (reading it then says so).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        what = "read" if mode & 0o004 else "write"
        return ("error", f"{path} is open to every user on this machine (mode {mode:04o}: others may {what} "
                         f"it): run `chmod o-rwx {path}` (the README's 0640, group doorguard)")
    if mode & 0o070 and st.st_gid not in {os.getegid(), *os.getgroups()}:
        try:
            import grp

            group = grp.getgrgid(st.st_gid).gr_name
        except (ImportError, KeyError):
            group = str(st.st_gid)
        return ("warning", f"{path} is readable by group {group} (mode {mode:04o}), which doorguard does not "
                           f"run as: `chgrp doorguard {path}` or `chmod g-rwx {path}`")
    return None


def node_id(name: str) -> str:
    """A device name reduced to the characters MQTT topics and HA ids accept."""
    return _ID_CHARS.sub("_", name).strip("_") or "doorguard"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("doorguard")
    except Exception:  # noqa: BLE001 - not installed (a bare checkout)
        return "0+unknown"


def _json_default(o: Any) -> Any:
    # Events come from dataclasses holding numpy scalars and Box objects.
    if hasattr(o, "as_list"):
        return o.as_list()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(float(t), timezone.utc).isoformat(timespec="milliseconds")


def event_payload(event: Mapping[str, Any] | Any, device: str, *, store_id: Any = None,
                  model_hashes: Mapping[str, str] | None = None,
                  wall_time: float | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object published for one event.

    Args:
        event: an ``edge.types.Event`` or a dict (keys of the event store's rows
            are understood: ``id``, ``time``, ``track``/``track_id``, ``verdict``,
            ``label``, ``score``, ``box`` or ``x1..y2``, ``alerted``, ``source``,
            ``detector_sha256``/``classifier_sha256`` or ``models``).
        device: the device name (``node_id``) put into the message.
        store_id: the event store's row id; default ``event["id"]``.
        model_hashes: {"detector": sha256, "classifier": sha256}; default from the event.
        wall_time: unix time of the event; default ``event.time`` (the service's
            Event.time is a monotonic clock, so it passes the frame's wall time here).
        extra: more fields for the message (e.g. ``arming``); never replaces the ones above.

    Returns:
        A dict with a fresh unique ``id`` (uuid4 hex), ``store_id``, ``device``,
        ``time`` (ISO 8601 UTC), ``timestamp`` (unix seconds), ``verdict``,
        ``label``, ``score``, ``track``, ``box``, ``alerted``, ``source``, ``models``.
    """
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        e = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    else:
        e = dict(event)
    ts = wall_time if wall_time is not None else e.get("time")
    ts = float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else time.time()
    box = e.get("box")
    if box is None and all(k in e for k in ("x1", "y1", "x2", "y2")):
        box = [e["x1"], e["y1"], e["x2"], e["y2"]]
    models = dict(model_hashes or e.get("models") or {})
    for role in ("detector", "classifier"):
        if e.get(f"{role}_sha256") and role not in models:
            models[role] = e[f"{role}_sha256"]
    track = e.get("track", e.get("track_id"))
    score = e.get("score")
    out = {
        "id": uuid.uuid4().hex,
        "store_id": store_id if store_id is not None else e.get("id"),
        "device": device,
        "time": _iso(ts),
        "timestamp": round(ts, 3),
        "verdict": e.get("verdict"),
        "label": e.get("label"),
        "score": round(float(score), 4) if isinstance(score, (int, float)) or hasattr(score, "item") else score,
        "track": track,
        "box": box,
        "alerted": e.get("alerted"),
        "source": e.get("source"),
        "models": models,
    }
    for k, v in (extra or {}).items():
        out.setdefault(k, v)
    # Round-trip once so numpy scalars / Box objects become plain JSON here, not in the sender.
    return json.loads(json.dumps(out, default=_json_default))


def discovery_common(node: str, device_name: str, prefix: str, qos: int = 1) -> dict[str, Any]:
    """The fields every doorguard entity's discovery config shares: availability, device, origin, qos."""
    sw = _version()
    device = {
        "identifiers": [f"doorguard_{node}"],
        "name": f"doorguard {device_name}",
        "model": "doorguard doorway watcher",
        "manufacturer": "doorguard",
        "sw_version": sw,
    }
    return {
        "availability_topic": f"{prefix}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "doorguard", "sw_version": sw},
        "qos": qos,
    }


def discovery_configs(node: str, device_name: str, prefix: str, discovery_prefix: str,
                      qos: int = 1) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery messages: {config topic: payload}.

    One config topic per entity (``<discovery_prefix>/<component>/<unique_id>/config``,
    HA's recommended form when entities have a unique_id), all sharing one
    ``device`` block and the availability topic, following HA's documented
    discovery fields (unique_id, state_topic, availability_topic,
    payload_available/payload_not_available, value_template, payload_on/off,
    device {identifiers, name, model, manufacturer, sw_version}, origin).
    """
    common = discovery_common(node, device_name, prefix, qos)
    ents: list[tuple[str, str, dict[str, Any]]] = [
        ("binary_sensor", "violation", {
            "name": "Violation",
            # Each event flips it on (violation) or off (compliant/neutral); off_delay
            # turns it back off when no new violation arrives.
            "state_topic": f"{prefix}/events",
            "value_template": "{{ 'ON' if value_json.verdict == 'violation' else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "off_delay": 10,
            "device_class": "safety",
            "json_attributes_topic": f"{prefix}/events",
            "icon": "mdi:door-closed-lock",
        }),
        ("sensor", "violations_today", {
            "name": "Violations today",
            "state_topic": f"{prefix}/state",
            "value_template": "{{ value_json.violations_today }}",
            "state_class": "total_increasing",
            "icon": "mdi:alert-octagon",
        }),
        ("sensor", "fps", {
            "name": "Frame rate",
            "state_topic": f"{prefix}/state",
            "value_template": "{{ value_json.fps }}",  # null -> "None": HA shows unknown
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "entity_category": "diagnostic",
        }),
        ("binary_sensor", "camera_problem", {
            "name": "Camera problem",
            "state_topic": f"{prefix}/state",
            # "None" is HA's payload for unknown (no camera report yet), not a problem.
            "value_template": "{{ 'None' if value_json.camera_ok is not defined or value_json.camera_ok is none"
                              " else ('OFF' if value_json.camera_ok else 'ON') }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "entity_category": "diagnostic",
        }),
        ("sensor", "outbox", {
            "name": "Events waiting to send",
            "state_topic": f"{prefix}/state",
            "value_template": "{{ value_json.outbox_pending }}",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": "mdi:tray-full",
        }),
    ]
    out: dict[str, dict[str, Any]] = {}
    for component, key, fields in ents:
        uid = f"doorguard_{node}_{key}"
        out[f"{discovery_prefix}/{component}/{uid}/config"] = {"unique_id": uid, **fields, **common}
    return out


def _local_day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(t))


class MqttPublisher:
    """Publishes events from a persistent outbox; never blocks the caller on the network.

    Args:
        cfg: the [mqtt] section.
        db_path: the event store's SQLite file; the ``outbox`` table lives beside ``events``.
        device_name: name in topics and Home Assistant; default ``cfg.device_name``, else the host name.
        clock: wall clock (queue times, "violations today").

    The service builds one only when ``cfg.enabled``. Use ``start()`` once,
    ``enqueue(event)`` per event (after the event store wrote it),
    ``update_state({...})`` as often as convenient, and ``close()`` (idempotent;
    also a context manager).
    """

    def __init__(self, cfg: MqttConfig, db_path: str | Path, device_name: str | None = None,
                 clock=time.time):
        self.cfg = cfg
        self.db_path = Path(db_path)
        self.device_name = device_name or cfg.device_name or socket.gethostname()
        self.node = node_id(self.device_name)
        self.prefix = cfg.topic_prefix or f"doorguard/{self.node}"
        self.client_id = cfg.client_id or f"doorguard-{self.node}"
        self.topic_events = f"{self.prefix}/events"
        self.topic_state = f"{self.prefix}/state"
        self.topic_availability = f"{self.prefix}/availability"
        self._clock = clock

        self._db_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._client = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}        # paho mid -> outbox seq (sender thread only)
        self._resend_pending = False               # in-flight rows from before a disconnect
        self._connected = threading.Event()
        self._last_problem: str | None = None      # last logged connection problem (log each once)
        self._started = False
        self._closed = False

        self._state_lock = threading.Lock()
        self._state: dict[str, Any] = {"fps": None, "camera_ok": None, "last_event_time": None}
        self._state_dirty = True
        self._state_sent_at = -math.inf
        self._day = _local_day(clock())
        self._violations_today = 0

        # Hooks for other modules (edge/hass.py): command topics, retained topics, more discovery.
        self._commands: dict[str, Any] = {}               # topic -> handler(payload text)
        self._retained: dict[str, bytes] = {}             # topic -> payload kept on the broker
        self._retained_dirty: set[str] = set()
        self._extra_discovery: dict[str, dict[str, Any] | None] = {}

        self._pending = 0
        self._trim_logged_at = -math.inf
        self.counters = {"enqueued": 0, "published": 0, "acked": 0, "dropped": 0, "republished_after_restart": 0}

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> "MqttPublisher":
        """Open the outbox and start connecting in the background.

        Never raises for network, credential or TLS problems: those are logged
        once and retried with back-off while events keep queueing.

        Raises:
            StateError: the outbox table cannot be created in ``db_path``.
        """
        if self._started:
            return self
        self._started = True
        self._open_db()
        client = self._make_client()
        if client is not None:
            self._client = client
            try:
                client.connect_async(self.cfg.host, self._port(), keepalive=self.cfg.keepalive)
                client.loop_start()
            except (OSError, ValueError) as e:  # bad host string and similar: still queue locally
                self._problem(f"cannot start MQTT client for {self._where()}: {e}", logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="mqtt-sender", daemon=True)
        self._thread.start()
        return self

    def close(self, flush_timeout_s: float = 2.0) -> None:
        """Stop publishing: wait briefly for outstanding PUBACKs, say offline, disconnect.

        Unacknowledged events stay in the outbox for the next start. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        if self._client is not None and self._connected.is_set():
            deadline = time.monotonic() + flush_timeout_s
            while (self._pending > 0 or self._retained_dirty) and time.monotonic() < deadline \
                    and self._connected.is_set():
                self._wake.set()
                time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._drain_acks()
        if self._client is not None:
            try:
                if self._connected.is_set():
                    info = self._client.publish(self.topic_availability, "offline", qos=1, retain=True)
                    info.wait_for_publish(timeout=1.0)
                self._client.disconnect()
            except Exception as e:  # noqa: BLE001 - shutting down: never let MQTT stop the service's exit
                log.debug("mqtt close: %s", e)
            self._client.loop_stop()
        if self._started:
            s = self.counters
            log.info("MQTT: %d event(s) queued this run, %d acknowledged by the broker, %d waiting for "
                     "the next start, %d dropped (outbox_cap)", s["enqueued"], s["acked"], self._pending,
                     s["dropped"])
        if self._db is not None:
            with self._db_lock:
                self._db.close()
                self._db = None

    def __enter__(self) -> "MqttPublisher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the caller's side (frame loop) ---------------------------------------------
    def enqueue(self, event: Mapping[str, Any] | Any, *, store_id: Any = None,
                model_hashes: Mapping[str, str] | None = None, wall_time: float | None = None,
                extra: Mapping[str, Any] | None = None) -> bool:
        """Queue one event for publishing and return at once (one small SQLite insert).

        Args:
            event: the event as stored (``edge.types.Event`` or a dict, see ``event_payload``).
            store_id: the event store's row id (``EventStore.add``'s return); default ``event["id"]``.
            model_hashes: {"detector": ..., "classifier": ...} published with the event.
            wall_time: unix time of the event (default ``event.time``).
            extra: more fields for the message (see ``event_payload``).

        Returns:
            True when queued; False when it was already queued (same store id) or
            the outbox is unusable (logged; the local alarm is unaffected).
        """
        if self._db is None:
            return False
        now = self._clock()
        payload = event_payload(event, self.node, store_id=store_id, model_hashes=model_hashes,
                                wall_time=wall_time, extra=extra)
        key = str(payload["store_id"]) if payload["store_id"] is not None else payload["id"]
        text = json.dumps(payload, separators=(",", ":"))
        try:
            with self._db_lock:
                db = self._db
                if db is None:
                    return False
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (event_id, payload, verdict, created) VALUES (?,?,?,?)",
                    (key, text, payload["verdict"], now))
                if cur.rowcount == 0:
                    return False
                self._pending += 1
                db.commit()
        except sqlite3.Error as e:
            self._problem(f"cannot queue event for MQTT in {self.db_path}: {e}", logging.ERROR)
            return False
        # Past outbox_cap the oldest unsent events go, but on the sender thread and in small
        # batches (_trim): deleting 290,000 rows here stalled the frame loop for a second.
        self.counters["enqueued"] += 1
        with self._state_lock:
            self._roll_day(now)
            if payload["verdict"] == "violation":
                self._violations_today += 1
            self._state["last_event_time"] = payload["time"]
            self._state_dirty = True
        self._wake.set()
        return True

    def update_state(self, state: Mapping[str, Any]) -> None:
        """Merge values (fps, camera_ok, ...) into the retained state message.

        Cheap; call it as often as convenient. The sender publishes at most
        once per ``state_interval_s`` and only when something changed.
        """
        with self._state_lock:
            for k, v in state.items():
                if self._state.get(k) != v:
                    self._state[k] = v
                    self._state_dirty = True

    def add_command(self, suffix: str, handler) -> str:
        """Subscribe to ``<prefix>/<suffix>`` (on every connect) and call ``handler(payload_text)``
        for each message; call before ``start()``.

        The handler runs on paho's network thread: it must return quickly and never publish
        and wait. Retained messages are ignored (a retained command would replay on every
        reconnect).

        Returns:
            The full topic.
        """
        topic = f"{self.prefix}/{suffix}"
        self._commands[topic] = handler
        return topic

    def set_retained(self, suffix: str, payload: str | bytes) -> None:
        """Keep ``payload`` retained on ``<prefix>/<suffix>``: published by the sender thread now
        (or once connected) and again after every reconnect. Cheap; never blocks."""
        topic = f"{self.prefix}/{suffix}"
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        with self._state_lock:
            self._retained[topic] = data
            self._retained_dirty.add(topic)
        self._wake.set()

    def add_discovery(self, configs: Mapping[str, dict[str, Any] | None]) -> None:
        """More Home Assistant discovery configs ({config topic: payload}); None publishes an
        empty retained config, which removes an entity discovered before. Call before ``start()``."""
        self._extra_discovery.update(configs)

    @property
    def connected(self) -> bool:
        """True while a broker connection is up."""
        return self._connected.is_set()

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests: enqueued, published, acked, dropped, pending, connected."""
        out = dict(self.counters)
        out["pending"] = self._pending
        out["connected"] = self.connected
        out["dropped_total"] = self._meta("dropped")
        return out

    # ---- SQLite -----------------------------------------------------------------------
    def _open_db(self) -> None:
        from .errors import StateError

        try:
            # The state directory exists when the event store is on; with [events]
            # off the outbox still needs it.
            self.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            from .events import private_file

            private_file(self.db_path)  # 0600, like the event store's (the same file)
            db = sqlite3.connect(self.db_path, timeout=5.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a commit survives a process crash (kill -9); only a
            # power cut can lose the last transactions, and never corrupts the file.
            db.execute("PRAGMA synchronous=NORMAL")
            # A WAL checkpoint fsyncs the database (tens of ms, more on an SD card);
            # enqueue runs on the frame loop, so this connection never checkpoints:
            # the sender thread does, on its own connection (_checkpoint).
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(OUTBOX_SCHEMA)
            now = self._clock()
            # Rows handed to the previous process's client may or may not have
            # reached the broker: send them again (at least once).
            again = db.execute("UPDATE outbox SET state='queued', sent_at=NULL WHERE state='sent'").rowcount
            self._pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state!='acked'").fetchone()[0]
            midnight = time.mktime(time.strptime(_local_day(now), "%Y-%m-%d"))
            self._violations_today = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE verdict='violation' AND created >= ?", (midnight,)).fetchone()[0]
            db.commit()
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"MQTT outbox in {self.db_path} is unusable: {e}") from e
        self._db = db
        self._prune_acked()
        self.counters["republished_after_restart"] = again
        if self._pending:
            log.info("MQTT outbox: %d event(s) from before the restart wait for the broker", self._pending)

    def _meta(self, key: str) -> int:
        with self._db_lock:
            if self._db is None:
                return 0
            row = self._db.execute("SELECT value FROM outbox_meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # ---- paho client ----------------------------------------------------------------
    def _port(self) -> int:
        return self.cfg.port or (8883 if self.cfg.tls.enabled else 1883)

    def _where(self) -> str:
        return f"{self.cfg.host}:{self._port()}"

    def _make_client(self):
        """The paho client with will, credentials, TLS and back-off; None when unusable (logged)."""
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            self._problem("paho-mqtt is not installed (pip install 'paho-mqtt>=2'): events stay queued",
                          logging.ERROR)
            return None

        class _Client(mqtt.Client):
            # paho's on_connect_fail carries no reason: keep the exception so
            # a TLS or DNS failure can be logged as what it is.
            last_error: BaseException | None = None

            def reconnect(self):  # noqa: D102
                try:
                    return super().reconnect()
                except OSError as e:
                    self.last_error = e
                    raise

        # clean_session: the outbox, not the broker session, is what keeps events.
        client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                         protocol=mqtt.MQTTv311, clean_session=True)
        c = self.cfg
        client.will_set(self.topic_availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=c.reconnect_min_s, max_delay=c.reconnect_max_s)
        client.max_inflight_messages_set(c.max_inflight)
        if c.username:
            password = None
            if c.password_file:
                problem = password_file_problem(Path(c.password_file).expanduser())
                if problem is not None and problem[0] == "error":
                    self._problem(f"MQTT password_file {problem[1]}; not used, events stay queued", logging.ERROR)
                    return None
                if problem is not None:
                    log.warning("MQTT password_file %s", problem[1])
                try:
                    lines = Path(c.password_file).expanduser().read_text(encoding="utf-8").splitlines()
                    password = lines[0] if lines else ""
                except (OSError, UnicodeDecodeError) as e:
                    self._problem(f"cannot read MQTT password_file {c.password_file}: "
                                  f"{getattr(e, 'strerror', None) or e}; events stay queued", logging.ERROR)
                    return None
            client.username_pw_set(c.username, password)
        if c.tls.enabled:
            try:
                client.tls_set(ca_certs=c.tls.ca_file, certfile=c.tls.certfile, keyfile=c.tls.keyfile,
                               cert_reqs=ssl.CERT_REQUIRED)
                client.tls_insecure_set(c.tls.insecure)
            except (OSError, ValueError, ssl.SSLError) as e:
                self._problem(f"MQTT TLS setup failed (ca_file/certfile/keyfile): {e}; events stay queued",
                              logging.ERROR)
                return None
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _problem(self, msg: str, level: int = logging.WARNING) -> None:
        # One line per distinct problem: a broker down for a day must not fill the journal.
        if msg != self._last_problem:
            self._last_problem = msg
            log.log(level, "%s", msg)

    # Callbacks run on paho's network thread. They only flip flags and queue
    # acks: on_publish is called with paho's message lock held, so touching
    # SQLite or publishing from here could deadlock against the sender thread.
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if getattr(reason_code, "is_failure", False):
            hint = ""
            if str(reason_code).lower() in ("not authorized", "bad user name or password"):
                hint = " (check username and password_file)"
            self._problem(f"MQTT broker {self._where()} refused the connection: {reason_code}{hint}; "
                          f"retrying with back-off, events stay queued", logging.ERROR)
            return
        self._last_problem = None
        log.info("MQTT connected to %s as %s (prefix %s, %d event(s) waiting)",
                 self._where(), self.client_id, self.prefix, self._pending)
        client.publish(self.topic_availability, "online", qos=1, retain=True)
        if self.cfg.discovery:
            # Home Assistant announces itself on <discovery_prefix>/status; discovery
            # configs are re-sent then (they are retained too, for brokers that keep them).
            client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
            self._publish_discovery(client)
        for topic in self._commands:
            client.subscribe(topic, qos=1)
        with self._state_lock:
            self._state_dirty = True
            self._state_sent_at = -math.inf
            self._retained_dirty = set(self._retained)
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        err = getattr(client, "last_error", None)
        # With TLS on, a reset or EOF after the TCP connect is the handshake failing
        # (typically TLS towards a plain listener); refused/DNS/timeouts are not TLS.
        tls_fail = isinstance(err, (ssl.SSLError, ssl.CertificateError)) or (
            self.cfg.tls.enabled and isinstance(err, (ConnectionResetError, BrokenPipeError, EOFError)))
        if tls_fail:
            reason = getattr(err, "strerror", None) or err
            self._problem(f"MQTT TLS handshake with {self._where()} failed: {reason}; check [mqtt.tls] "
                          f"(ca_file, certfile) and that the port is a TLS listener; retrying with back-off, "
                          f"events stay queued", logging.ERROR)
        else:
            reason = getattr(err, "strerror", None) or err or "connection failed"
            self._problem(f"MQTT broker {self._where()} unreachable: {reason}; "
                          f"retrying with back-off, events stay queued")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        # Whatever is in flight now, paho resends after the reconnect; the sender
        # holds new events back until those are acknowledged (order). The sender
        # clears this as soon as nothing is in flight.
        self._resend_pending = True
        if was and not self._stop.is_set():
            self._problem(f"MQTT connection to {self._where()} lost ({reason_code}); "
                          f"reconnecting, events stay queued")
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_message(self, client, userdata, msg) -> None:
        handler = self._commands.get(msg.topic)
        if handler is not None:
            if msg.retain:
                self._problem(f"MQTT: ignored a retained message on {msg.topic} (commands must not be "
                              "retained)")
                return
            try:
                handler(msg.payload.decode("utf-8", errors="replace"))
            except Exception as e:  # noqa: BLE001 - a bad command must not take paho's thread down
                log.warning("MQTT command on %s failed: %s: %s", msg.topic, type(e).__name__, e)
            return
        if msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload == b"online":
            self._publish_discovery(client)
            with self._state_lock:
                self._state_dirty = True
                self._state_sent_at = -math.inf
            self._wake.set()

    def _publish_discovery(self, client) -> None:
        for topic, payload in discovery_configs(self.node, self.device_name, self.prefix,
                                                self.cfg.discovery_prefix, self.cfg.qos).items():
            client.publish(topic, json.dumps(payload), qos=1, retain=True)
        for topic, payload in self._extra_discovery.items():
            client.publish(topic, "" if payload is None else json.dumps(payload), qos=1, retain=True)

    # ---- the sender thread ----------------------------------------------------------
    def _run(self) -> None:
        next_prune = time.monotonic() + 3600.0
        next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
        ckpt: sqlite3.Connection | None = None
        while not self._stop.is_set():
            self._wake.wait(min(0.5, self.cfg.state_interval_s))
            self._wake.clear()
            try:
                self._drain_acks()
                if self._pending > self.cfg.outbox_cap:
                    self._trim()
                if time.monotonic() >= next_prune:  # a service runs for months: keep the table small
                    next_prune = time.monotonic() + 3600.0
                    self._prune_acked()
                if time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
                    if ckpt is None:
                        ckpt = sqlite3.connect(self.db_path, timeout=5.0)
                    # PASSIVE: copies what it can without waiting for (or blocking) writers;
                    # keeps the WAL short so no commit on the frame loop has to checkpoint.
                    ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if self._client is not None and self._connected.is_set():
                    self._send_some()
                    self._maybe_publish_state()
                    self._publish_retained()
            except sqlite3.Error as e:
                self._problem(f"MQTT outbox error: {e}", logging.ERROR)
                self._stop.wait(1.0)
            except Exception as e:  # noqa: BLE001 - the sender must survive anything; the alarm is local
                log.exception("MQTT sender error (continuing): %s", e)
                self._stop.wait(1.0)
        if ckpt is not None:
            ckpt.close()

    def _trim(self, batch: int = TRIM_BATCH) -> int:
        """Drop the oldest never-sent events past ``outbox_cap``, ``batch`` rows per transaction.

        Runs on the sender thread; the lock is held for one batch at a time and let go
        between batches, so an enqueue from the frame loop waits at most about one batch.

        Returns:
            Rows dropped.
        """
        total = 0
        while not self._stop.is_set():
            with self._db_lock:
                db = self._db
                excess = self._pending - self.cfg.outbox_cap
                if db is None or excess <= 0:
                    break
                n = db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state='queued'"
                               " ORDER BY seq LIMIT ?)", (min(excess, batch),)).rowcount
                if n:
                    self._pending -= n
                    self.counters["dropped"] += n
                    db.execute("INSERT INTO outbox_meta (key, value) VALUES ('dropped', ?) ON CONFLICT(key)"
                               " DO UPDATE SET value = value + excluded.value", (n,))
                db.commit()
            if not n:
                break  # what is left over the cap is in flight: it goes out, then counts down
            total += n
            # threading.Lock is not fair: without a pause this loop would take the lock straight
            # back, and an enqueue from the frame loop could wait behind many batches.
            self._stop.wait(0.005)
        if total and time.monotonic() >= self._trim_logged_at + 60.0:  # one line a minute at most
            self._trim_logged_at = time.monotonic()
            log.warning("MQTT outbox full (outbox_cap=%d): dropped the %d oldest unsent event(s), %d so far",
                        self.cfg.outbox_cap, total, self.counters["dropped"])
        if total:
            with self._state_lock:
                self._state_dirty = True
        return total

    def _prune_acked(self) -> None:
        with self._db_lock:
            if self._db is not None:
                self._db.execute("DELETE FROM outbox WHERE state='acked' AND acked_at < ?",
                                 (self._clock() - ACKED_KEEP_S,))
                self._db.commit()

    def _drain_acks(self) -> None:
        seqs = []
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                seqs.append(seq)
        if not self._inflight:
            self._resend_pending = False
        if not seqs:
            return
        now = self._clock()
        with self._db_lock:
            if self._db is None:
                return
            self._db.executemany("UPDATE outbox SET state='acked', acked_at=? WHERE seq=? AND state='sent'",
                                 [(now, s) for s in seqs])
            self._db.commit()
            self._pending = max(0, self._pending - len(seqs))
        self.counters["acked"] += len(seqs)
        with self._state_lock:
            self._state_dirty = True

    def _send_some(self) -> None:
        import paho.mqtt.client as mqtt

        if self._resend_pending:
            # paho resends what was in flight at the disconnect; new events wait
            # behind them so the broker sees every event in order.
            return
        room = self.cfg.max_inflight - len(self._inflight)
        if room <= 0:
            return
        with self._db_lock:
            if self._db is None:
                return
            rows = self._db.execute("SELECT seq, payload FROM outbox WHERE state='queued' ORDER BY seq LIMIT ?",
                                    (room,)).fetchall()
        if not rows:
            return
        sent: list[tuple[float, int]] = []
        for seq, payload in rows:
            if not self._connected.is_set():
                break
            info = self._client.publish(self.topic_events, payload, qos=self.cfg.qos, retain=False)
            # NO_CONN: paho keeps a QoS>0 message and sends it on reconnect; it is ours in flight.
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.debug("mqtt publish rc=%s, will retry", info.rc)
                break
            self._inflight[info.mid] = seq
            sent.append((self._clock(), seq))
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                self._resend_pending = True
                break
        if sent:
            with self._db_lock:
                if self._db is not None:
                    self._db.executemany("UPDATE outbox SET state='sent', sent_at=? WHERE seq=?", sent)
                    self._db.commit()
            self.counters["published"] += len(sent)

    def _publish_retained(self) -> None:
        with self._state_lock:
            dirty, self._retained_dirty = self._retained_dirty, set()
            items = [(t, self._retained[t]) for t in dirty]
        for topic, data in items:
            self._client.publish(topic, data, qos=1, retain=True)

    def _roll_day(self, now: float) -> None:
        day = _local_day(now)
        if day != self._day:
            self._day = day
            self._violations_today = 0
            self._state_dirty = True

    def _maybe_publish_state(self) -> None:
        now = self._clock()
        with self._state_lock:
            self._roll_day(now)
            # A change inside the interval waits for the sender's next tick (<= 0.5 s
            # after the interval ends), so none is left unsent.
            if not self._state_dirty or time.monotonic() - self._state_sent_at < self.cfg.state_interval_s:
                return
            payload = dict(self._state)
            payload["violations_today"] = self._violations_today
            payload["outbox_pending"] = self._pending
            payload["outbox_dropped"] = self.counters["dropped"]
            payload["time"] = _iso(now)
            self._state_dirty = False
            self._state_sent_at = time.monotonic()
        self._client.publish(self.topic_state, json.dumps(payload, default=_json_default), qos=1, retain=True)
