"""What is published for one event: one JSON object, plain JSON types, ids MQTT and HA accept."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

#: HA discovery and MQTT topic levels allow only these characters in ids.
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def node_id(name: str) -> str:
    """A device name reduced to the characters MQTT topics and HA ids accept."""
    return _ID_CHARS.sub("_", name).strip("_") or "doorguard"


def json_default(o: Any) -> Any:
    """``json.dumps``'s ``default``: Box objects, dataclasses and numpy scalars as plain JSON."""
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


def iso_utc(t: float | None) -> str | None:
    """Unix time as ISO 8601 in UTC, to the millisecond; None stays None."""
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
        "time": iso_utc(ts),
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
    return json.loads(json.dumps(out, default=json_default))
