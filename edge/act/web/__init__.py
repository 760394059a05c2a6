"""The local web page: live annotated view and status, behind a login.

Whoever mounts the Pi by a door has to aim the camera and check that faces come
out large enough; later they want to glance at what it has seen. Faces are
personal data, so the page is off by default (``[web] enabled = false``), listens
on loopback by default (reach it from a laptop with
``ssh -L 8080:localhost:8080 pi@doorway.local``), and never shows anything
without a login. Binding beyond loopback without a password set is refused.

The page runs on Flask, served by waitress (a fixed pool of worker threads,
capped connections, idle connections closed) from a background thread of the
runner process. Only this device's host names are answered (DNS rebinding), a
login takes its slot in the per-address limit before the password is checked,
at most ``MAX_PASSWORD_CHECKS`` scrypt checks run at once and
``MAX_PASSWORD_CHECKS_PER_MINUTE`` a minute from all addresses, and ``next``
after a login is only ever a path on this page. The frame loop never waits for
it: the loop only hands over a *reference* to its newest frame and overlays
(:class:`~edge.act.web.handover.LiveFrame`, no copy, no encode); the JPEG encode at
reduced size and rate happens on the viewer's request thread, and only while a
viewer is connected.

Pages (all need a login):

* ``/``           live annotated MJPEG view (boxes, labels, verdicts, fps)
* ``/status``     uptime, fps, camera, models and hashes, CPU temperature and
  throttling, last events (thumbnails only when snapshots are on), and the
  "test buzzer/LEDs" button (POST with a CSRF token)
* ``/status.json`` the same as JSON; ``/frame.jpg`` one annotated frame;
  ``/stream.mjpg`` the stream itself; ``/thumb/<id>`` an event's thumbnail
* ``/zones``      draw zones and privacy masks over the live view and save them
  to the config file (``edge/act/web/zone_editor.py``; only when the runner passes one)

``doorguard set-password`` stores the password as an scrypt hash with a random
salt in a 0600 file (by default ``web-password`` in the state directory).

One module a job; import a name from the module that owns it:

    handover.py      LiveFrame, Overlay, overlays_from_tracks: the frame loop's side
    render.py        render_frame: scale, draw the overlays, encode a JPEG
    stream.py        LiveView: the MJPEG stream and single frames, viewers counted and capped
    guards.py        Host header (DNS rebinding), ``next`` after a login, loopback binds
    passwords.py     scrypt hashes and the 0600 password file
    sessions.py      server-side sessions, the login rate limits, one login attempt
    health.py        CPU temperature and throttling from sysfs
    events.py        the event store read for the status page
    templates.py     the pages' HTML and the values they show
    server.py        WebServer: the Flask routes, served by waitress (serving.py)
    set_password.py  ``doorguard set-password``
    zone_editor.py   ZoneEditor: the ``/zones`` page, its checks and the save
    zone_overlay.py  the zones the page saved (``<state dir>/zones.toml``); ``doorguard zones``
"""
