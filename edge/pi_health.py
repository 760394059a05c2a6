"""Raspberry Pi firmware health words, shared by ``doorguard doctor`` and the web status page."""

from __future__ import annotations

#: get_throttled bits -> words: bits 0-3 say what holds now, the same bit + 16 what
#: happened since boot (Raspberry Pi firmware).
THROTTLE_BITS = {
    0: "under-voltage",
    1: "ARM frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
#: Offset of the "since boot" copy of each bit.
SINCE_BOOT = 16


def decode_throttled(value: int) -> tuple[list[str], list[str]]:
    """``get_throttled`` bits -> (conditions now, conditions since boot), in words."""
    now = [w for b, w in THROTTLE_BITS.items() if value & (1 << b)]
    past = [w for b, w in THROTTLE_BITS.items() if value & (1 << (b + SINCE_BOOT))]
    return now, past
