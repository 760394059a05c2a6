"""The ``[gpio]`` section: BCM pins of the LEDs, buzzer and mute button, and pattern timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import _Section, pin_off


class GpioConfig(_Section):
    """The ``[gpio]`` section: BCM pin numbers and pattern timings."""

    red_led: int | None = Field(17, ge=0, le=53, description="BCM pin of the red (alert) LED; \"none\" (or false) disables it")
    green_led: int | None = Field(27, ge=0, le=53, description="BCM pin of the green (compliant) LED; \"none\" (or false) disables it")
    buzzer: int | None = Field(22, ge=0, le=53, description="BCM pin of the buzzer; \"none\" (or false) disables it")
    buzzer_kind: Literal["active", "tonal"] = Field(
        "active",
        description="active: a buzzer with its own oscillator (on/off, gpiozero Buzzer); "
        "tonal: a passive piezo driven by PWM at buzzer_tone (gpiozero TonalBuzzer)",
    )
    buzzer_tone: str | float = Field(
        "A5", description="Tonal buzzer only: note name ('A5') or frequency in Hz the alert plays"
    )
    mute_button: int | None = Field(
        None, ge=0, le=53,
        description="BCM pin of a push button to ground (internal pull-up) that silences the buzzer "
        "and sound for mute_minutes; \"none\" (or false, the default) disables it",
    )
    # Ranges a person can see and hear: alert_on_seconds = 1e-300 passed before (a beep nobody
    # hears), alert_repeats = 1e12 a buzzer that never stops.
    mute_minutes: float = Field(
        10.0, ge=0.1, le=24 * 60.0, description="How long one press of the mute button silences alerts")
    alert_on_seconds: float = Field(
        0.2, ge=0.02, le=10.0, description="Alert pattern: seconds red LED and buzzer are on per beep")
    alert_off_seconds: float = Field(0.2, ge=0.02, le=10.0, description="Alert pattern: seconds off between beeps")
    alert_repeats: int = Field(5, ge=1, le=50, description="Alert pattern: number of beeps per alert")
    compliant_seconds: float = Field(
        2.0, ge=0.1, le=60.0, description="Seconds the green LED stays on for a compliant face")
    fault_on_seconds: float = Field(
        0.1, ge=0.02, le=10.0, description="Fault pattern: seconds of each short red flash")
    fault_off_seconds: float = Field(
        1.9, ge=0.05, le=60.0, description="Fault pattern: seconds dark between flashes")
    sound_file: Path | None = Field(
        None, description="Optional WAV file played on alert (not while muted); none disables sound"
    )
    sound_player: list[str] = Field(
        default_factory=lambda: ["aplay", "-q"],
        min_length=1,
        description="Command that plays sound_file (the file is appended as its last argument)",
    )

    @field_validator("red_led", "green_led", "buzzer", "mute_button", mode="before")
    @classmethod
    def _pin_off(cls, v: Any) -> Any:
        return pin_off(v)

    @field_validator("buzzer_tone")
    @classmethod
    def _audible(cls, v: str | float) -> str | float:
        from gpiozero.tones import Tone  # pure arithmetic: no pins touched

        try:
            hz = Tone(v).frequency if isinstance(v, str) else float(v)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{v!r} is not a note name (A5, C#4) or a frequency in Hz: {e}") from None
        if not 20.0 <= hz <= 20_000.0:
            raise ValueError(f"{v!r} ({hz:g} Hz) is outside what a buzzer plays and people hear (20-20000 Hz)")
        return v

    @model_validator(mode="after")
    def _pattern_ends(self) -> "GpioConfig":
        if self.alert_seconds > 120.0:
            raise ValueError(f"one alert lasts alert_repeats x (alert_on_seconds + alert_off_seconds) = "
                             f"{self.alert_seconds:g} s; keep it under 120 s")
        return self

    @model_validator(mode="after")
    def _distinct_pins(self) -> "GpioConfig":
        used: dict[int, str] = {}
        for name in ("red_led", "green_led", "buzzer", "mute_button"):
            pin = getattr(self, name)
            if pin is None:
                continue
            if pin in used:
                raise ValueError(f"{name} and {used[pin]} both use BCM pin {pin}")
            used[pin] = name
        return self

    @property
    def alert_seconds(self) -> float:
        """How long one alert pattern lasts."""
        return self.alert_repeats * (self.alert_on_seconds + self.alert_off_seconds)
