"""Stage 6, rules: what may be looked at, what a face's settled labels mean, whether to act.

    zones.py      zones (where faces count), privacy masks and what a picture may show
    facetouch.py  a hand box over a face box: the ``facetouch`` vote
    rules.py      settled labels -> violation / compliant events, cooldowns (pure)
    arming.py     armed, muted or disarmed; schedules and the mute button

Imports nothing of the last stage (act).
"""
