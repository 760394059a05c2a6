"""Home Assistant, the way it expects: arming controls, a violation event, the last face.

Built on the MQTT publisher's hooks (edge/act/mqtt/publisher.py: ``add_command``, ``set_retained``,
``add_discovery``); all on the one doorguard device, with the availability topic of
the other entities. The discovery payloads follow Home Assistant's documented MQTT
schemas (home-assistant.io/integrations/<platform>.mqtt/):

* ``switch`` "Armed" (switch.mqtt: ``command_topic``, ``payload_on``/``payload_off``,
  ``state_topic`` + ``value_template`` rendering to the payloads, as ``state_on``/
  ``state_off`` default to them);
* ``select`` "Arming mode" (select.mqtt: ``command_topic``, ``options`` (required),
  ``state_topic`` + ``value_template`` giving one of the options): schedule, armed,
  disarmed;
* ``button`` "Mute alarm" / "Unmute alarm" (button.mqtt: ``command_topic``,
  ``payload_press``);
* ``sensor`` "Alarm state" (``device_class: enum`` with ``options``, attributes from
  ``json_attributes_topic``);
* ``event`` "Violation event" (event.mqtt: ``state_topic``, ``event_types`` (required),
  ``value_template`` rendering a JSON object with ``event_type``; "empty dicts will be
  ignored", so compliant events render ``{}``). It reads the same ``<prefix>/events``
  messages as the violation binary_sensor, so it inherits the outbox's store-and-forward
  and order; the attributes are label, score, track, alerted, id and time;
* ``image`` "Last violation" (image.mqtt: ``image_topic`` with the raw JPEG bytes,
  ``content_type``; no ``image_encoding``: not base64) only while snapshots are on;
  with snapshots off its discovery config is published empty, which removes it.

Command topic ``<prefix>/arming/set`` (not retained; a retained command is ignored):
``arm``, ``disarm``, ``schedule``, ``mute [minutes]``, ``unmute``. State topic
``<prefix>/arming`` (retained JSON, see ``Arming.snapshot``). The last violation's
face image: ``<prefix>/snapshot`` (retained JPEG) and ``<prefix>/snapshot/info``
(retained JSON: label, score, track, time, store_id).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .mqtt.discovery import discovery_common

log = logging.getLogger("doorguard.hass")

COMMAND_SUFFIX = "arming/set"
STATE_SUFFIX = "arming"
SNAPSHOT_SUFFIX = "snapshot"
SNAPSHOT_INFO_SUFFIX = "snapshot/info"

#: event.mqtt value_template: one HA event per violation that the alarm acted on while not
#: disarmed (events stored while disarmed carry arming "disarmed"); {} for the rest (ignored).
EVENT_TEMPLATE = (
    "{% if value_json.verdict == 'violation' and (value_json.arming | default('armed')) != 'disarmed' %}"
    "{{ {'event_type': value_json.label | lower, 'label': value_json.label, 'score': value_json.score, "
    "'track': value_json.track, 'alerted': value_json.alerted, 'id': value_json.id, "
    "'time': value_json.time} | tojson }}{% else %}{}{% endif %}"
)


def entity_configs(node: str, device_name: str, prefix: str, discovery_prefix: str, *, qos: int = 1,
                   event_types: list[str], commands: bool = True, snapshots: bool = False
                   ) -> dict[str, dict[str, Any] | None]:
    """Discovery configs {config topic: payload or None (remove)} of this module's entities.

    Args:
        node, device_name, prefix, discovery_prefix: as for ``edge.act.mqtt.discovery.discovery_configs``.
        event_types: the violation labels (``rules.alert_on_classifier`` + ``alert_on_detector``).
        commands: the switch, select and buttons (``[arming] mqtt_commands``); False removes them.
        snapshots: the image entity (``[events.snapshots] enabled``); False removes it.
    """
    common = discovery_common(node, device_name, prefix, qos)
    cmd = f"{prefix}/{COMMAND_SUFFIX}"
    state = f"{prefix}/{STATE_SUFFIX}"
    ents: list[tuple[str, str, dict[str, Any] | None]] = [
        ("switch", "armed", {
            "name": "Armed",
            "command_topic": cmd, "payload_on": "arm", "payload_off": "disarm",
            "state_topic": state, "value_template": "{{ 'arm' if value_json.armed else 'disarm' }}",
            "icon": "mdi:shield-home",
        } if commands else None),
        ("select", "arming_mode", {
            "name": "Arming mode",
            "command_topic": cmd, "options": ["schedule", "armed", "disarmed"],
            "state_topic": state, "value_template": "{{ value_json.mode }}",
            "icon": "mdi:calendar-clock",
        } if commands else None),
        ("button", "mute", {
            "name": "Mute alarm", "command_topic": cmd, "payload_press": "mute", "icon": "mdi:volume-off",
        } if commands else None),
        ("button", "unmute", {
            "name": "Unmute alarm", "command_topic": cmd, "payload_press": "unmute", "icon": "mdi:volume-high",
        } if commands else None),
        ("sensor", "alarm_state", {
            "name": "Alarm state",
            "state_topic": state, "value_template": "{{ value_json.state }}",
            "device_class": "enum", "options": ["armed", "muted", "disarmed"],
            "json_attributes_topic": state, "icon": "mdi:shield-half-full",
        }),
        ("event", "violation_event", {
            "name": "Violation event",
            "state_topic": f"{prefix}/events",
            "event_types": sorted({t.casefold() for t in event_types}) or ["violation"],
            "value_template": EVENT_TEMPLATE,
            "icon": "mdi:account-alert",
        }),
        ("image", "last_violation", {
            "name": "Last violation",
            "image_topic": f"{prefix}/{SNAPSHOT_SUFFIX}", "content_type": "image/jpeg",
            "json_attributes_topic": f"{prefix}/{SNAPSHOT_INFO_SUFFIX}",
            "icon": "mdi:face-recognition",
        } if snapshots else None),
    ]
    out: dict[str, dict[str, Any] | None] = {}
    for component, key, fields in ents:
        uid = f"doorguard_{node}_{key}"
        topic = f"{discovery_prefix}/{component}/{uid}/config"
        out[topic] = None if fields is None else {"unique_id": uid, **fields, **common}
    return out


class HomeAssistantLink:
    """Ties the arming state and the snapshots to the MQTT publisher (the runner builds one
    when ``[mqtt] enabled``).

    Args:
        publisher: a not yet started ``edge.act.mqtt.publisher.MqttPublisher``.
        arming: the ``edge.decide.arming.Arming`` (None: no arming entities).
        event_types: violation labels for the event entity.
        snapshots: snapshots are on (the image entity).
    """

    def __init__(self, publisher: Any, arming: Any, *, event_types: list[str], snapshots: bool) -> None:
        self.publisher = publisher
        self.arming = arming
        self.snapshots = snapshots
        cfg = publisher.cfg
        commands = arming is not None and arming.cfg.mqtt_commands
        if cfg.discovery:
            publisher.add_discovery(entity_configs(publisher.node, publisher.device_name, publisher.prefix,
                                                   cfg.discovery_prefix, qos=cfg.qos, event_types=event_types,
                                                   commands=commands, snapshots=snapshots))
        if arming is not None:
            if commands:
                publisher.add_command(COMMAND_SUFFIX, self._on_command)
            arming.add_listener(self.publish_arming)
            self.publish_arming(arming.snapshot())

    def _on_command(self, text: str) -> None:
        try:
            self.arming.command(text, by="mqtt")
        except ValueError as e:
            log.warning("MQTT %s/%s: %s", self.publisher.prefix, COMMAND_SUFFIX, e)

    def publish_arming(self, snap: dict) -> None:
        """Retain the arming state on ``<prefix>/arming``."""
        self.publisher.set_retained(STATE_SUFFIX, json.dumps(snap, separators=(",", ":")))

    def violation(self, event: Any, snapshot: Path | None, wall_time: float | None, store_id: Any) -> bool:
        """Publish the snapshot JPEG of an alerting violation as the image entity's picture.

        Returns:
            True when an image was handed to the publisher.
        """
        if not self.snapshots or snapshot is None:
            return False
        try:
            data = Path(snapshot).read_bytes()
        except OSError as e:
            log.warning("snapshot %s not published: %s", snapshot, e.strerror or e)
            return False
        from .mqtt.payloads import iso_utc

        info = {"label": event.label, "score": round(float(event.score), 4), "track": event.track_id,
                "time": iso_utc(wall_time), "store_id": store_id}
        self.publisher.set_retained(SNAPSHOT_INFO_SUFFIX, json.dumps(info))
        self.publisher.set_retained(SNAPSHOT_SUFFIX, data)
        return True
