"""The pages' HTML (Jinja, rendered by Flask's ``render_template_string``) and the values they show.

``LAYOUT`` wraps every page, the zone editor's too (edge/act/web/zone_editor.py, through the server's
``page``): the body template is rendered first, its values escaped, and passed in as ``body``.
"""

from __future__ import annotations

import time
from typing import Any


LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>doorguard: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
nav{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#222}
nav a{color:#9cf} nav form{margin-left:auto}
main{padding:1em} table{border-collapse:collapse} td,th{padding:.2em .6em;border-bottom:1px solid #333;text-align:left}
.bad{color:#f66} .ok{color:#6d6} .msg{padding:.5em;background:#333;display:inline-block}
img.live{max-width:100%;background:#000} button{font-size:1em;padding:.3em .8em}
</style></head><body>
<nav><b>doorguard</b>{% if logged_in %}<a href="/">Live</a><a href="/status">Status</a>
{% if zones %}<a href="/zones">Zones</a>{% endif %}
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">Log out</button></form>{% endif %}</nav>
<main><h1>{{ title }}</h1>{{ body|safe }}</main></body></html>
"""

LOGIN = """{% if error %}<p class="bad" id="error">{{ error }}</p>{% endif %}
{% if no_password %}<p class="msg">No password is set yet. On the device run
<code>doorguard set-password</code> (writes {{ password_file }}), then log in.</p>{% endif %}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{ next }}">
<label>Password <input type="password" name="password" id="password" autocomplete="current-password" autofocus></label>
<button type="submit" id="login">Log in</button></form>
"""

LIVE = """<p>Annotated camera view at up to {{ fps }} fps, {{ width }} px wide.
Aim the camera so faces by the door come out large.</p>
<img class="live" id="live" src="/stream.mjpg" alt="live view">
"""

STATUS = """{% if tested == "ok" %}<p class="msg ok" id="tested">Buzzer and LED test pattern started.</p>
{% elif tested %}<p class="msg bad" id="tested">Buzzer and LED test failed; see the log.</p>{% endif %}
{% if st.status_error %}<p class="bad">Status unavailable: {{ st.status_error }}</p>{% endif %}
<table id="status">
<tr><th>Uptime</th><td>{{ uptime }}</td></tr>
<tr><th>Frames per second</th><td>{{ "%.1f"|format(st.fps) if st.fps is number else "?" }}</td></tr>
<tr><th>Camera</th><td>{% if st.camera_ok %}<span class="ok">ok</span>{% elif st.camera_ok is none %}?
{% else %}<span class="bad">lost</span>{% endif %}{% if st.source %} ({{ st.source }}){% endif %}</td></tr>
{% if st.frames is not none %}<tr><th>Frames</th><td>{{ st.frames }}{% if st.dropped is not none %},
{{ st.dropped }} dropped{% endif %}</td></tr>{% endif %}
{% for m in st.models or [] %}<tr><th>Model</th><td>{{ m.name }} <code>{{ (m.sha256 or "")[:16] }}</code></td></tr>
{% endfor %}
{% for zone, c in st.pi.temperatures_c.items() %}<tr><th>Temperature ({{ zone }})</th>
<td class="{{ 'bad' if c >= 80 else '' }}">{{ "%.1f"|format(c) }} &deg;C</td></tr>{% endfor %}
{% if st.pi.throttled is not none %}<tr><th>Throttling</th><td class="{{ 'bad' if st.pi.throttled else 'ok' }}">
{{ "0x%x"|format(st.pi.throttled) }} {{ st.pi.throttled_flags|join(", ") or "none" }}</td></tr>{% endif %}
{% for k, v in extra.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
<tr><th>Live viewers</th><td>{{ st.web.viewers }}</td></tr>
</table>
{% if arming %}<h2>Alarm</h2>
{% if arming_result == "ok" %}<p class="msg ok" id="arming-done">Done.</p>
{% elif arming_result %}<p class="msg bad" id="arming-done">Not changed; see the log.</p>{% endif %}
<table id="arming"><tr><th>State</th><td id="arming-state"
class="{{ 'bad' if arming.state == 'disarmed' else 'ok' }}">{{ arming.state }}</td></tr>
<tr><th>Mode</th><td>{{ arming.mode }}{% if arming.override_until %} until {{ arming.override_until }}{% endif %}
</td></tr>
{% if arming.muted_until %}<tr><th>Muted until</th><td>{{ arming.muted_until }}</td></tr>{% endif %}
<tr><th>Schedule says</th><td>{{ arming.schedule_state }}{% if arming.next_schedule_change %}, next change
{{ arming.next_schedule_change }}{% endif %}</td></tr>
<tr><th>Last change</th><td>{{ arming.changed_at }} by {{ arming.changed_by }}</td></tr>
{% if door %}<tr><th>Door relay</th><td>GPIO{{ door.pin }} {{ "open" if door.open else "shut" }},
{{ door.openings }} opening(s), {{ door.refused }} refused</td></tr>{% endif %}
</table>
{% if arming_buttons %}<form method="post" action="/arming" id="arming-form">
<input type="hidden" name="csrf" value="{{ csrf_token }}">
{% for a in ["arm", "disarm", "schedule", "mute", "unmute"] %}<button type="submit" name="action" value="{{ a }}"
id="arming-{{ a }}">{{ a|capitalize }}</button> {% endfor %}</form>{% endif %}
{% if arming.history %}<table id="arming-history"><tr><th>Time</th><th>State</th><th>By</th><th>Detail</th></tr>
{% for h in arming.history %}<tr><td>{{ h.when }}</td><td>{{ h.previous }} &rarr; {{ h.state }}</td>
<td>{{ h.by }}</td><td>{{ h.detail or "" }}</td></tr>{% endfor %}</table>{% endif %}
{% endif %}
<h2>Installation check</h2>
<form method="post" action="/test-outputs"><input type="hidden" name="csrf" value="{{ csrf_token }}">
<button type="submit" id="test-outputs">Test buzzer and LEDs</button></form>
<h2>Last events</h2>
{% if events %}<table id="events"><tr><th>Time</th><th>Track</th><th>Verdict</th><th>Label</th><th>Score</th>
{% if snapshots %}<th>Snapshot</th>{% endif %}</tr>
{% for e in events %}<tr><td>{{ e.when }}</td><td>{{ e.track_id }}</td>
<td class="{{ 'bad' if e.verdict == 'violation' else 'ok' if e.verdict == 'compliant' else '' }}">{{ e.verdict }}</td>
<td>{{ e.label }}</td><td>{{ e.score }}</td>{% if snapshots %}<td>{% if e.has_snapshot %}
<img src="/thumb/{{ e.id if e.id is not none else loop.index0 }}" width="120" alt="snapshot">{% endif %}</td>{% endif %}
</tr>{% endfor %}</table>{% else %}<p>No events yet.</p>{% endif %}
"""


def duration(seconds: Any) -> str:
    """Seconds as ``[Nd ]HH:MM:SS``; ``?`` when not a number."""
    try:
        s = int(float(seconds))
    except (TypeError, ValueError):
        return "?"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def event_row(e: dict) -> dict:
    """One event of the status dict as the events table shows it (local time, score to 2 places)."""
    t = e.get("time")
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))
    except (TypeError, ValueError, OverflowError, OSError):
        when = str(t or "")
    score = e.get("score")
    try:
        score = f"{float(score):.2f}"
    except (TypeError, ValueError):
        score = "" if score is None else str(score)
    return {"id": e.get("id"), "when": when, "track_id": e.get("track_id", ""), "verdict": e.get("verdict", ""),
            "label": e.get("label", ""), "score": score, "has_snapshot": bool(e.get("snapshot"))}
