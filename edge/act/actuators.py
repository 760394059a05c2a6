"""Buzzer, LEDs and an optional sound file: how doorguard warns the person by the door.

Every method returns at once. Patterns run on gpiozero's own background threads
(``LED.blink(background=True)``, ``Buzzer.beep``), a passive buzzer's pattern on a
``gpiozero.threads.GPIOThread`` that waits on its stop event (never a plain
``sleep``), and the sound file plays in a separate ``aplay`` process that is
never waited for. The face-touch project this grew from beeped inside its video
loop and the feed lagged; here the loop only ever starts a pattern.

Devices never touch a GPIO library: they ask the pin factory passed in
(``pin_factory=None`` means gpiozero's default, e.g. lgpio on a Pi 5), so tests
pass a ``MockFactory`` and read the pin history. Off a Raspberry Pi, with no
``GPIOZERO_PIN_FACTORY`` and no factory set, ``None`` means gpiozero's mock pins
(so ``make run`` works on a laptop and logs the pin activity); on a Pi a
missing pin library stays an error, never a silent mock.

Patterns (all timings from :class:`GpioConfig`):

* ``alert()``: red LED blinks and the buzzer beeps ``alert_repeats`` times
  (buzzer and sound are skipped while muted; the LED still shows).
* ``compliant()``: green LED on for ``compliant_seconds``.
* ``set_fault(True)``: red LED gives a short flash every
  ``fault_on_seconds + fault_off_seconds`` until ``set_fault(False)``: the camera
  is lost or a model failed. An alert during a fault plays, then the fault
  pattern resumes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import HardwareError
from ..settings.gpio import GpioConfig

log = logging.getLogger("doorguard.gpio")


class Actuators:
    """Non-blocking buzzer/LED/sound output for the doorway runner.

    Args:
        cfg: pins and timings.
        pin_factory: gpiozero pin factory; None uses gpiozero's default
            (``Device.pin_factory`` / ``GPIOZERO_PIN_FACTORY``).
        clock: monotonic clock in seconds (tests move it to expire the mute).
        popen: starts the sound player (``subprocess.Popen`` signature).

    Raises:
        HardwareError: a pin cannot be claimed (busy, no GPIO, bad factory).

    Use as a context manager, or call :meth:`close` (idempotent).
    """

    def __init__(
        self,
        cfg: GpioConfig,
        pin_factory=None,
        *,
        clock: Callable[[], float] = time.monotonic,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen,
    ) -> None:
        self.cfg = cfg
        self._clock = clock
        self._popen = popen
        self._lock = threading.RLock()
        self._closed = False
        self._fault = False
        self._mute_until = float("-inf")
        #: Called instead of :meth:`mute` when the mute button is pressed (the runner points it
        #: at ``Arming.mute``, which mutes these outputs through its listener).
        self.on_mute_button: Callable[[], None] | None = None
        self._resume_timer: threading.Timer | None = None
        self._tone_thread = None
        self._player: subprocess.Popen | None = None
        self._sound_broken = False
        self._red = self._green = self._buzzer = self._button = None
        if pin_factory is None:
            pin_factory = default_pin_factory()
        try:
            from gpiozero import LED, Buzzer, Button, TonalBuzzer
            from gpiozero.tones import Tone

            if cfg.red_led is not None:
                self._red = LED(cfg.red_led, pin_factory=pin_factory)
            if cfg.green_led is not None:
                self._green = LED(cfg.green_led, pin_factory=pin_factory)
            if cfg.buzzer is not None:
                if cfg.buzzer_kind == "tonal":
                    self._tone = Tone(cfg.buzzer_tone)
                    # Centre the buzzer's one-octave range on the alert tone so it is always playable.
                    self._buzzer = TonalBuzzer(cfg.buzzer, mid_tone=self._tone, pin_factory=pin_factory)
                else:
                    self._buzzer = Buzzer(cfg.buzzer, pin_factory=pin_factory)
            if cfg.mute_button is not None:
                self._button = Button(cfg.mute_button, pull_up=True, bounce_time=0.05, pin_factory=pin_factory)
                self._button.when_pressed = self._on_mute_pressed
        except Exception as e:  # gpiozero raises many kinds (BadPinFactory, GPIOPinInUse, ...)
            self._close_devices()
            raise HardwareError(
                f"cannot claim GPIO pins (red={cfg.red_led}, green={cfg.green_led}, buzzer={cfg.buzzer}, "
                f"mute={cfg.mute_button}): {type(e).__name__}: {e}. Run `doorguard doctor`."
            ) from e
        log.info(
            "gpio ready: red LED %s, green LED %s, %s buzzer %s, mute button %s",
            _pin(cfg.red_led), _pin(cfg.green_led), cfg.buzzer_kind, _pin(cfg.buzzer), _pin(cfg.mute_button),
        )

    # -- public API -------------------------------------------------------------------------------

    @property
    def muted(self) -> bool:
        """True while a mute-button press silences the buzzer and sound."""
        return self._clock() < self._mute_until

    @property
    def fault(self) -> bool:
        """True while the fault pattern is requested."""
        return self._fault

    def mute(self, minutes: float | None = None) -> None:
        """Silence buzzer and sound for ``minutes`` (default ``cfg.mute_minutes``); stops a beep now."""
        minutes = self.cfg.mute_minutes if minutes is None else minutes
        with self._lock:
            if self._closed:
                return
            self._mute_until = self._clock() + minutes * 60.0
            self._buzzer_off()
            self._stop_sound()
        log.info("gpio: muted for %g min", minutes)

    def unmute(self) -> None:
        """End a mute now (the next alert sounds)."""
        with self._lock:
            self._mute_until = float("-inf")
        log.info("gpio: unmuted")

    def alert(self) -> None:
        """Start the alert pattern (red LED + buzzer + sound); returns at once."""
        cfg = self.cfg
        with self._lock:
            if self._closed:
                return
            self._cancel_resume()
            if self._green is not None:
                self._green.off()
            if self._red is not None:
                self._red.blink(cfg.alert_on_seconds, cfg.alert_off_seconds, n=cfg.alert_repeats, background=True)
            muted = self.muted
            if self._buzzer is not None and not muted:
                self._buzzer_pattern()
            if not muted:
                self._play_sound()
            if self._fault:
                self._schedule_resume(cfg.alert_seconds)
        log.info(
            "gpio: alert: red LED %s + buzzer %s blink %gs on/%gs off x%d%s",
            _pin(cfg.red_led), _pin(cfg.buzzer), cfg.alert_on_seconds, cfg.alert_off_seconds,
            cfg.alert_repeats, " (muted: buzzer and sound silent)" if muted else "",
        )

    def compliant(self) -> None:
        """Light the green LED for ``compliant_seconds``; returns at once."""
        with self._lock:
            if self._closed or self._green is None:
                return
            # One blink with no off time: on now, off after compliant_seconds, on gpiozero's thread.
            self._green.blink(self.cfg.compliant_seconds, 0, n=1, background=True)
        log.info("gpio: compliant: green LED %s on for %gs", _pin(self.cfg.green_led), self.cfg.compliant_seconds)

    def set_fault(self, fault: bool) -> None:
        """Show (True) or clear (False) the fault pattern: camera lost or a model failed."""
        fault = bool(fault)
        with self._lock:
            if self._closed or fault == self._fault:
                return
            self._fault = fault
            self._cancel_resume()
            if self._red is not None:
                if fault:
                    self._red.blink(self.cfg.fault_on_seconds, self.cfg.fault_off_seconds, background=True)
                else:
                    self._red.off()
        if fault:
            log.info("gpio: fault pattern on: red LED %s flashes %gs every %gs", _pin(self.cfg.red_led),
                     self.cfg.fault_on_seconds, self.cfg.fault_on_seconds + self.cfg.fault_off_seconds)
        else:
            log.info("gpio: fault pattern off: red LED %s off", _pin(self.cfg.red_led))

    def off(self) -> None:
        """Stop every pattern and turn all outputs off (devices stay open)."""
        with self._lock:
            if self._closed:
                return
            self._cancel_resume()
            self._all_off()

    def close(self) -> None:
        """Turn everything off, stop the patterns and the player, release the pins. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancel_resume()
            self._stop_sound()
            self._close_devices()
        log.info("gpio: closed, all outputs off")

    def __enter__(self) -> "Actuators":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _on_mute_pressed(self) -> None:
        # Runs on gpiozero's callback thread.
        handler = self.on_mute_button
        if handler is not None:
            handler()
        else:
            self.mute()

    def _buzzer_pattern(self) -> None:
        cfg = self.cfg
        if self.cfg.buzzer_kind == "active":
            self._buzzer.beep(cfg.alert_on_seconds, cfg.alert_off_seconds, n=cfg.alert_repeats, background=True)
            return
        # TonalBuzzer has no beep(): PWMOutputDevice.blink would drive a steady 100% duty
        # (silent on a piezo), so play the tone/silence sequence on a GPIOThread that waits on
        # its stop event, as gpiozero's own blink threads do.
        from gpiozero.threads import GPIOThread

        self._stop_tone_thread()
        thread = GPIOThread(self._tone_sequence, (cfg.alert_on_seconds, cfg.alert_off_seconds, cfg.alert_repeats))
        self._tone_thread = thread
        thread.start()

    def _tone_sequence(self, on_time: float, off_time: float, n: int) -> None:
        stopping = threading.current_thread().stopping  # this GPIOThread's own stop event
        try:
            for _ in range(n):
                self._buzzer.play(self._tone)
                if stopping.wait(on_time):
                    break
                self._buzzer.stop()
                if stopping.wait(off_time):
                    break
        finally:
            if not stopping.is_set():
                self._buzzer.stop()

    def _stop_tone_thread(self) -> None:
        thread, self._tone_thread = self._tone_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.stop(timeout=2)

    def _buzzer_off(self) -> None:
        if self._buzzer is None:
            return
        if self.cfg.buzzer_kind == "tonal":
            self._stop_tone_thread()
            self._buzzer.stop()
        else:
            self._buzzer.off()

    def _all_off(self) -> None:
        self._buzzer_off()
        for led in (self._red, self._green):
            if led is not None:
                led.off()

    def _schedule_resume(self, delay: float) -> None:
        timer = threading.Timer(delay, self._resume_fault)
        timer.daemon = True
        self._resume_timer = timer
        timer.start()

    def _resume_fault(self) -> None:
        with self._lock:
            if self._closed or not self._fault or self._resume_timer is None:
                return
            self._resume_timer = None
            if self._red is not None:
                self._red.blink(self.cfg.fault_on_seconds, self.cfg.fault_off_seconds, background=True)
        log.info("gpio: fault pattern resumed on red LED %s", _pin(self.cfg.red_led))

    def _cancel_resume(self) -> None:
        timer, self._resume_timer = self._resume_timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(timeout=2)

    def _play_sound(self) -> None:
        path = self.cfg.sound_file
        if path is None or self._sound_broken:
            return
        if self._player is not None and self._player.poll() is None:
            return  # still playing: never stack a second player on the first
        cmd = [*self.cfg.sound_player, str(path)]
        try:
            self._player = self._popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as e:
            # A missing player must not take the alarm down: LEDs and buzzer still work.
            self._sound_broken = True
            log.warning("gpio: cannot play %s with %s (%s); sound disabled (apt install alsa-utils)",
                        path, _cmdline(cmd), e)
            return
        log.info("gpio: sound: %s", _cmdline(cmd))

    def _stop_sound(self) -> None:
        player, self._player = self._player, None
        if player is None or player.poll() is not None:
            return
        player.terminate()
        try:
            player.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            player.kill()
            player.wait(timeout=0.5)

    def _close_devices(self) -> None:
        for name in ("_buzzer", "_red", "_green", "_button"):
            dev = getattr(self, name, None)
            if dev is None:
                continue
            try:
                if name == "_buzzer":
                    self._buzzer_off()
                elif name != "_button":
                    dev.off()  # stops the blink thread (joined) and drives the pin low
            except Exception:  # noqa: BLE001 - closing must go on with the other pins
                log.exception("gpio: turning %s off failed", name.strip("_"))
            try:
                dev.close()
            except Exception:  # noqa: BLE001
                log.exception("gpio: closing %s failed", name.strip("_"))
            setattr(self, name, None)


def on_raspberry_pi(root: Path = Path("/")) -> bool:
    """True when the device tree says this is a Raspberry Pi."""
    try:
        return (root / "proc/device-tree/model").read_bytes().startswith(b"Raspberry Pi")
    except OSError:
        return False


def default_pin_factory():
    """The pin factory for ``pin_factory=None``: gpiozero's default, or mock pins off a Pi.

    Returns None (gpiozero picks: lgpio on a Pi 5) on a Raspberry Pi, when
    ``GPIOZERO_PIN_FACTORY`` is set, or when a default factory is already set;
    otherwise a ``MockFactory`` with PWM-capable pins.
    """
    from gpiozero import Device

    if Device.pin_factory is not None or os.environ.get("GPIOZERO_PIN_FACTORY") or on_raspberry_pi():
        return None
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    log.info("gpio: not a Raspberry Pi: using gpiozero's mock pins (pin activity is logged)")
    return MockFactory(pin_class=MockPWMPin)


def _pin(pin: int | None) -> str:
    return "off" if pin is None else f"GPIO{pin}"


def _cmdline(cmd: list[str]) -> str:
    return " ".join(cmd)
