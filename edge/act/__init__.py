"""Stage 7, act: what doorguard does with an event, and everything it shows.

    actuators.py  buzzer, LEDs and sound on GPIO (pin_factory passed in)
    door.py       the optional door relay
    events.py     the SQLite event store and its snapshots
    annotate.py   ``--annotate``: a video of the run with boxes and verdicts
    mqtt/         events to a broker, with a store-and-forward outbox
    hass.py       Home Assistant: arming controls, violation events, the last face
    web/          the local page: live view, status, the zone editor, ``set-password``
"""
