"""An optional door relay: an entrance that opens only for a compliant face.

When a face settles on a compliant label (``mask``; ``me`` with a me/not_me
classifier; ``[door] open_on`` narrows it), the relay output closes for
``open_seconds`` on gpiozero's own background thread (``DigitalOutputDevice.blink``
with ``n=1``, never a sleep on the frame loop). It never opens while the alarm is
disarmed or while the fault pattern shows (camera lost, models failing), and a
violation, a fault or a disarm while it is open shuts it at once.

Like the other outputs it asks the pin factory passed in (tests pass gpiozero's
``MockFactory`` and read the pin's history).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..errors import HardwareError
from ..settings.door import DoorConfig

log = logging.getLogger("doorguard.door")


class DoorRelay:
    """The relay output: ``open()`` for a compliant face, ``shut()``, ``set_fault()``, ``set_armed()``.

    Args:
        cfg: the ``[door]`` section (``relay_pin`` must be set).
        pin_factory: gpiozero pin factory (None: the same default as the other outputs).

    Raises:
        HardwareError: the pin cannot be claimed.
    """

    def __init__(self, cfg: DoorConfig, pin_factory: Any = None) -> None:
        if cfg.relay_pin is None:
            raise ValueError("DoorRelay needs [door] relay_pin")
        self.cfg = cfg
        self._lock = threading.Lock()
        self._fault = False
        self._armed = True
        self._closed = False
        self.openings = 0
        self.refused = 0
        from .actuators import default_pin_factory

        if pin_factory is None:
            pin_factory = default_pin_factory()
        try:
            from gpiozero import DigitalOutputDevice

            self._dev = DigitalOutputDevice(cfg.relay_pin, active_high=cfg.active_high, initial_value=False,
                                     pin_factory=pin_factory)
        except Exception as e:  # gpiozero raises many kinds
            raise HardwareError(f"cannot claim the door relay on GPIO{cfg.relay_pin}: {type(e).__name__}: {e}. "
                                "Run `doorguard doctor`.") from e
        log.info("door relay on GPIO%d (active %s), %g s per opening", cfg.relay_pin,
                 "high" if cfg.active_high else "low", cfg.open_seconds)

    @property
    def is_open(self) -> bool:
        """True while the relay is closed (the door may be opened)."""
        with self._lock:
            return not self._closed and bool(self._dev.value)

    def may_open(self, label: str, compliant_labels: list[str]) -> bool:
        """True when ``label`` is one that opens the door (``open_on``, else any compliant label)."""
        allowed = self.cfg.open_on or compliant_labels
        return label.casefold() in {lab.casefold() for lab in allowed}

    def open(self, why: str = "") -> bool:
        """Close the relay for ``open_seconds``; refused (False) while disarmed or faulted."""
        with self._lock:
            if self._closed:
                return False
            if not self._armed or self._fault:
                self.refused += 1
                reason = "disarmed" if not self._armed else "fault"
                log.info("door: not opened for %s (%s)", why or "a compliant face", reason)
                return False
            self._dev.blink(on_time=self.cfg.open_seconds, off_time=0, n=1, background=True)
            self.openings += 1
        log.info("door: relay GPIO%d closed for %g s (%s)", self.cfg.relay_pin, self.cfg.open_seconds,
                 why or "compliant face")
        return True

    def shut(self, why: str = "") -> None:
        """Open the relay now (the door locks again)."""
        with self._lock:
            if self._closed or not self._dev.value:
                return
            self._dev.off()
        log.info("door: relay shut (%s)", why or "requested")

    def set_fault(self, fault: bool) -> None:
        """A fault shuts the door and keeps it shut until cleared."""
        self._fault = bool(fault)
        if fault:
            self.shut("fault")

    def set_armed(self, armed: bool) -> None:
        """Disarmed: the door shuts and stays shut."""
        self._armed = bool(armed)
        if not armed:
            self.shut("disarmed")

    def status(self) -> dict:
        """For the status page."""
        return {"pin": self.cfg.relay_pin, "open": self.is_open, "openings": self.openings,
                "refused": self.refused, "fault": self._fault, "armed": self._armed}

    def close(self) -> None:
        """Relay open (door locked), pin released. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._dev.off()
            finally:
                self._dev.close()
