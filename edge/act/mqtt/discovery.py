"""Home Assistant MQTT discovery: the retained config messages that make doorguard one HA device."""

from __future__ import annotations

from typing import Any


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("doorguard")
    except Exception:  # noqa: BLE001 - not installed (a bare checkout)
        return "0+unknown"


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
