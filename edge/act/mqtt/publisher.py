"""The MQTT publisher: a sender thread that publishes the outbox in order, and the connection's callbacks.

The frame loop only queues (:meth:`MqttPublisher.enqueue`, one insert into the outbox,
edge/act/mqtt/outbox.py). The sender thread publishes queued rows with QoS 1 and marks a row
acknowledged when its PUBACK arrives; it also trims the outbox past ``outbox_cap``,
checkpoints the WAL, and publishes the retained state message. paho's own network thread
runs the callbacks, which only flip flags and queue acknowledgements. A broker that is down,
a wrong password or a TLS failure is logged once and retried with back-off; events wait.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...settings.mqtt import MqttConfig
from .client import make_client
from .discovery import discovery_configs
from .outbox import TRIM_BATCH, Outbox
from .payloads import event_payload, iso_utc, json_default, node_id

log = logging.getLogger("doorguard.mqtt")

#: The sender thread checkpoints the WAL this often (the enqueue connection never does).
CHECKPOINT_EVERY_S = 5.0


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

        #: The queue of event messages (edge/act/mqtt/outbox.py).
        self.outbox = Outbox(self.db_path, clock)
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

        # Hooks for other modules (edge/act/hass.py): command topics, retained topics, more discovery.
        self._commands: dict[str, Any] = {}               # topic -> handler(payload text)
        self._retained: dict[str, bytes] = {}             # topic -> payload kept on the broker
        self._retained_dirty: set[str] = set()
        self._extra_discovery: dict[str, dict[str, Any] | None] = {}

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
        self._open_outbox()
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
            while (self.outbox.pending > 0 or self._retained_dirty) and time.monotonic() < deadline \
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
                     "the next start, %d dropped (outbox_cap)", s["enqueued"], s["acked"], self.outbox.pending,
                     s["dropped"])
        self.outbox.close()

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
        if not self.outbox.is_open:
            return False
        now = self._clock()
        payload = event_payload(event, self.node, store_id=store_id, model_hashes=model_hashes,
                                wall_time=wall_time, extra=extra)
        key = str(payload["store_id"]) if payload["store_id"] is not None else payload["id"]
        text = json.dumps(payload, separators=(",", ":"))
        try:
            if not self.outbox.add(key, text, payload["verdict"], now):
                return False
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
        out["pending"] = self.outbox.pending
        out["connected"] = self.connected
        out["dropped_total"] = self.outbox.meta("dropped")
        return out

    # ---- the outbox ----------------------------------------------------------------
    def _open_outbox(self) -> None:
        again = self.outbox.open()
        midnight = time.mktime(time.strptime(_local_day(self._clock()), "%Y-%m-%d"))
        self._violations_today = self.outbox.violations_since(midnight)
        self.outbox.prune_acked()
        self.counters["republished_after_restart"] = again
        if self.outbox.pending:
            log.info("MQTT outbox: %d event(s) from before the restart wait for the broker", self.outbox.pending)

    # ---- paho client ----------------------------------------------------------------
    def _port(self) -> int:
        return self.cfg.port or (8883 if self.cfg.tls.enabled else 1883)

    def _where(self) -> str:
        return f"{self.cfg.host}:{self._port()}"

    def _make_client(self):
        """The paho client (edge/act/mqtt/client.py) with this publisher's callbacks; None when unusable (logged)."""
        client = make_client(self.cfg, self.client_id, self.topic_availability, self._problem)
        if client is None:
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
                 self._where(), self.client_id, self.prefix, self.outbox.pending)
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
        while not self._stop.is_set():
            self._wake.wait(min(0.5, self.cfg.state_interval_s))
            self._wake.clear()
            try:
                self._drain_acks()
                if self.outbox.pending > self.cfg.outbox_cap:
                    self._trim()
                if time.monotonic() >= next_prune:  # a service runs for months: keep the table small
                    next_prune = time.monotonic() + 3600.0
                    self.outbox.prune_acked()
                if time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
                    self.outbox.checkpoint()
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
        self.outbox.close_checkpoints()

    def _trim(self, batch: int = TRIM_BATCH) -> int:
        """Drop the oldest never-sent events past ``outbox_cap``, ``batch`` rows per transaction.

        Runs on the sender thread; the lock is held for one batch at a time and let go
        between batches, so an enqueue from the frame loop waits at most about one batch.

        Returns:
            Rows dropped.
        """
        total = 0
        while not self._stop.is_set():
            n = self.outbox.drop_oldest(self.cfg.outbox_cap, batch)
            if not n:
                break  # what is left over the cap is in flight: it goes out, then counts down
            self.counters["dropped"] += n
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
        if not self.outbox.mark_acked(seqs):
            return
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
        rows = self.outbox.queued(room)
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
            self.outbox.mark_sent(sent)
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
            payload["outbox_pending"] = self.outbox.pending
            payload["outbox_dropped"] = self.counters["dropped"]
            payload["time"] = iso_utc(now)
            self._state_dirty = False
            self._state_sent_at = time.monotonic()
        self._client.publish(self.topic_state, json.dumps(payload, default=json_default), qos=1, retain=True)
