"""The paho client the publisher talks through, and the checks on its password file."""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path
from typing import Any, Callable

from ...settings.mqtt import MqttConfig

log = logging.getLogger("doorguard.mqtt")


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


def make_client(cfg: MqttConfig, client_id: str, will_topic: str, report: Callable[[str, int], None]) -> Any:
    """The paho client with its will, credentials, TLS and back-off; callbacks are the caller's.

    Args:
        cfg: the ``[mqtt]`` section.
        client_id: the MQTT client id.
        will_topic: where the broker says ``offline`` (retained) when the connection dies.
        report: ``report(message, logging level)`` logs why the client cannot be used.

    Returns:
        An unconnected ``paho.mqtt.client.Client``, or None when it cannot be used (paho
        missing, the password file unreadable or open to all, TLS files bad; ``report`` said
        which): events then stay queued.
    """
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        report("paho-mqtt is not installed (pip install 'paho-mqtt>=2'): events stay queued", logging.ERROR)
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
    client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                     protocol=mqtt.MQTTv311, clean_session=True)
    client.will_set(will_topic, "offline", qos=1, retain=True)
    client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)
    client.max_inflight_messages_set(cfg.max_inflight)
    if cfg.username:
        password = None
        if cfg.password_file:
            problem = password_file_problem(Path(cfg.password_file).expanduser())
            if problem is not None and problem[0] == "error":
                report(f"MQTT password_file {problem[1]}; not used, events stay queued", logging.ERROR)
                return None
            if problem is not None:
                log.warning("MQTT password_file %s", problem[1])
            try:
                lines = Path(cfg.password_file).expanduser().read_text(encoding="utf-8").splitlines()
                password = lines[0] if lines else ""
            except (OSError, UnicodeDecodeError) as e:
                report(f"cannot read MQTT password_file {cfg.password_file}: "
                       f"{getattr(e, 'strerror', None) or e}; events stay queued", logging.ERROR)
                return None
        client.username_pw_set(cfg.username, password)
    if cfg.tls.enabled:
        try:
            client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.certfile, keyfile=cfg.tls.keyfile,
                           cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(cfg.tls.insecure)
        except (OSError, ValueError, ssl.SSLError) as e:
            report(f"MQTT TLS setup failed (ca_file/certfile/keyfile): {e}; events stay queued", logging.ERROR)
            return None
    return client
