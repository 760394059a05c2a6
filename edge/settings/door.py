"""The ``[door]`` section: the optional door relay."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from .base import _Section, pin_off


class DoorConfig(_Section):
    """The ``[door]`` section: the optional relay that opens the door for a compliant face."""

    relay_pin: int | None = Field(
        None, ge=0, le=53, description="BCM pin of the door relay; \"none\" (the default) leaves it out")
    active_high: bool = Field(
        True, description="true: the pin goes high to close the relay; false: low (many relay boards)")
    open_seconds: float = Field(3.0, ge=0.2, le=120.0, description="How long the relay stays closed per opening")
    open_on: list[str] = Field(
        default_factory=list,
        description="Compliant labels that open the door (e.g. [\"me\"]); empty: every label in "
        "rules.compliant_on_classifier")

    @field_validator("relay_pin", mode="before")
    @classmethod
    def _pin_off(cls, v: Any) -> Any:
        return pin_off(v)
