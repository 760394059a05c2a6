"""Events leave the device: MQTT publishing with a store-and-forward outbox.

Every event is first written to the SQLite event store (edge/act/events.py). The
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

One module a job; import a name from the module that owns it:

    payloads.py     event_payload (the JSON of one event), node_id, iso_utc
    discovery.py    Home Assistant discovery configs
    outbox.py       Outbox: the SQLite queue beside the event store, in order, until PUBACK
    client.py       the paho client (will, credentials, TLS, back-off); password_file_problem
    publisher.py    MqttPublisher: the sender thread, connection callbacks, the state message

Home Assistant's arming controls and event entities are built on the publisher's hooks in
edge/act/hass.py.
"""
