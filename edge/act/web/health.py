"""The Pi's health for the status page: CPU temperature and throttling, read from sysfs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ...pi_health import decode_throttled


def read_pi_health(sys_root: str | os.PathLike = "/sys") -> dict[str, Any]:
    """CPU temperature (thermal zones) and Raspberry Pi throttling flags from sysfs.

    Returns:
        ``{"temperatures_c": {zone type: degrees}, "throttled": int | None,
        "throttled_flags": [str]}``; empty values where the files do not exist
        (not a Pi, or a container).
    """
    root = Path(sys_root)
    temps: dict[str, float] = {}
    for zone in sorted(root.glob("class/thermal/thermal_zone*")):
        try:
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            kind = (zone / "type").read_text().strip() or zone.name
        except OSError:
            kind = zone.name
        temps[kind if kind not in temps else f"{kind} ({zone.name})"] = milli / 1000.0
    throttled = None
    # Pi 4 and earlier: soc/soc:firmware; Pi 5: soc@.../...:firmware. Single-level globs only (sysfs has loops).
    for pattern in ("devices/platform/soc/soc:firmware/get_throttled",
                    "devices/platform/soc*/*firmware*/get_throttled"):
        for f in root.glob(pattern):
            try:
                throttled = int(f.read_text().strip(), 16)
                break
            except (OSError, ValueError):
                continue
        if throttled is not None:
            break
    now, past = decode_throttled(throttled) if throttled is not None else ([], [])
    flags = [f"{w} now" for w in now] + [f"{w} since boot" for w in past]
    return {"temperatures_c": temps, "throttled": throttled, "throttled_flags": flags}


class CachedPiHealth:
    """:func:`read_pi_health`, read again at most every ``max_age_s`` (status views and JSON polls share it).

    Args:
        sys_root: sysfs root (tests point it elsewhere).
        clock: monotonic clock in seconds.
        max_age_s: how long one reading is shown.
    """

    def __init__(self, sys_root: str | os.PathLike, clock: Callable[[], float], max_age_s: float = 5.0) -> None:
        self.sys_root = sys_root
        self.max_age_s = max_age_s
        self._clock = clock
        self._last: tuple[float, dict] | None = None

    def get(self) -> dict[str, Any]:
        """The latest reading (see :func:`read_pi_health`)."""
        now = self._clock()
        if self._last is None or now - self._last[0] > self.max_age_s:
            self._last = (now, read_pi_health(self.sys_root))
        return self._last[1]
