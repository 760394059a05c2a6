"""The ``[web]`` section: the optional local page (live view and status)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from .base import _Section


class WebConfig(_Section):
    """The ``[web]`` section: the optional local page (live view and status)."""

    enabled: bool = Field(
        False, description="Serve the local web page (live view, status). Off by default: faces are personal data"
    )
    bind: str = Field(
        "127.0.0.1",
        description=(
            "Address to listen on (an IP address or 'localhost'). Anything but loopback needs a password "
            "set; from a laptop prefer loopback and `ssh -L 8080:localhost:8080 pi@doorway.local`"
        ),
    )
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free one; tests use it)")
    password_file: str | None = Field(
        None,
        description=(
            "File with the scrypt hash written by `doorguard set-password`; relative paths resolve against "
            "the state directory; absent: 'web-password' in the state directory"
        ),
    )
    session_minutes: float = Field(
        60.0, gt=0.0, le=7 * 24 * 60, description="A login lasts this many minutes, then the page asks again"
    )
    live_fps: float = Field(
        2.0, gt=0.0, le=15.0, description="Most frames per second sent to a live viewer (each costs one JPEG encode)"
    )
    live_width: int = Field(
        640, ge=64, le=1920, description="Width of the live view in pixels (frames are scaled down, never up)"
    )
    jpeg_quality: int = Field(70, ge=10, le=95, description="JPEG quality of the live view and thumbnails")
    max_viewers: int = Field(
        2, ge=1, le=8, description="Live viewers at once; more are answered 503 (protects the frame loop)"
    )
    login_failures_per_minute: int = Field(
        5, ge=1, le=100,
        description="Failed logins allowed per client address per minute; beyond it logins answer 429",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names the page answers to besides localhost, this device's host name and "
            "<hostname>.local (IP addresses always work); a request naming any other host is refused "
            "(DNS rebinding). A leading dot allows subdomains ('.example.lan')"
        ),
    )
    idle_timeout_s: int = Field(
        30, ge=1, le=600,
        description="A connection that sends nothing for this many seconds (half-sent request, idle "
        "keep-alive) is closed",
    )
    max_connections: int = Field(
        24, ge=4, le=256,
        description="Open connections at most; beyond it new ones wait in the kernel's queue",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, v: list[str]) -> list[str]:
        out = []
        for h in v:
            name = h.strip().lower().rstrip(".")
            if not name or len(name) > 253 or not all(c.isalnum() or c in "-._" for c in name) \
                    or not name.isascii():
                raise ValueError(f"{h!r} is not a host name")
            out.append(name)
        return out

    @field_validator("bind")
    @classmethod
    def _bind_is_address(cls, v: str) -> str:
        v = v.strip()
        if v == "localhost":
            return v
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address or 'localhost'") from None
        return v
