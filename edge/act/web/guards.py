"""What a request must pass before the page looks at it: the ``Host`` it names (DNS
rebinding), where a login may send the browser (``next``), and which binds count as local."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

#: Longest ``next`` a login accepts (it is only ever a path on this page).
_MAX_NEXT = 512


def is_loopback(bind: str) -> bool:
    """True when ``bind`` only accepts connections from this machine."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def safe_next(value: str | None) -> str:
    """Where a login sends the browser: ``value`` when it is a path on this page, else ``"/"``.

    Only a path that starts with a single ``/`` and holds printable ASCII without spaces or
    backslashes. Browsers drop tabs and newlines inside a URL and read ``\\`` as ``/``, so
    ``/<TAB>/evil.example`` or ``/\\evil.example`` would become ``//evil.example``: another site.
    A newline would also end up in the ``Location`` header.
    """
    if not value or len(value) > _MAX_NEXT or not value.startswith("/") or value.startswith("//"):
        return "/"
    if any(not (0x21 <= ord(c) <= 0x7E) or c == "\\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def default_host_names() -> set[str]:
    """Names this device answers to by default: localhost, its host name and ``<hostname>.local``."""
    names = {"localhost", "localhost.localdomain"}
    try:
        host = socket.gethostname().strip().lower().rstrip(".")
    except OSError:
        host = ""
    if host:
        short = host.split(".")[0]
        names |= {host, short, f"{short}.local"}
    return names


def _split_host(host: str) -> str | None:
    """The host name or address of a ``Host`` header value (port dropped), None when malformed."""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        rest = h[end + 1:] if end > 0 else "x"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return h[1:end]
    if h.count(":") == 1:
        h, _, port = h.partition(":")
        if not port.isdigit():
            return None
    return h.rstrip(".") or None


def host_allowed(host: str | None, allowed: set[str] | frozenset[str]) -> bool:
    """True when a request's ``Host`` names this device.

    An IP address always does: DNS rebinding needs a *name* that an attacker's DNS
    points at the device, and a page the browser loaded from an address has that
    address as its own origin. A name must be in ``allowed`` (entries starting with a
    dot allow that domain and its subdomains).
    """
    name = _split_host(host or "")
    if name is None:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    for a in allowed:
        if name == a or (a.startswith(".") and (name.endswith(a) or name == a[1:])):
            return True
    return False
