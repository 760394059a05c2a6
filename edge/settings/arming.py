"""The ``[arming]`` section and its ``[[arming.schedule]]`` windows."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import _Section

STATE_FILE = "arming.json"
WEEK_MINUTES = 7 * 1440
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS = {"daily": DAYS, "weekdays": DAYS[:5], "weekends": DAYS[5:]}
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _minutes(text: str, allow_24: bool) -> int:
    m = _HHMM.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a time HH:MM (00:00-23:59)")
    h, mi = int(m.group(1)), int(m.group(2))
    if h == 24 and (mi or not allow_24):
        raise ValueError(f"{text!r}: 24:00 is only an end time" if not mi else f"{text!r} is past 24:00")
    return h * 60 + mi


class ScheduleWindow(_Section):
    """One ``[[arming.schedule]]`` window: a state on some days between two wall-clock times."""

    state: Literal["armed", "disarmed"] = Field(description="State inside the window")
    days: list[str] = Field(
        default_factory=lambda: list(DAYS),
        description="Days the window starts on: mon..sun, or daily / weekdays / weekends (default every day)",
    )
    start: str = Field("00:00", description="Start, local time HH:MM")
    end: str = Field("24:00", description="End, local time HH:MM (24:00 = midnight); an end at or before the "
                     "start ends the next day (22:00-07:00)")

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for d in v:
            key = d.strip().lower()
            if key in _DAY_GROUPS:
                names = _DAY_GROUPS[key]
            elif key in DAYS or key in _FULL_DAYS:
                names = (key[:3],)
            else:
                raise ValueError(f"{d!r} is not a day (mon, tue, wed, thu, fri, sat, sun, daily, weekdays, "
                                 "weekends)")
            out += [x for x in names if x not in out]
        if not out:
            raise ValueError("no days: leave days out for every day")
        return out

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        _minutes(v, allow_24=False)
        return v.strip()

    @field_validator("end")
    @classmethod
    def _end(cls, v: str) -> str:
        _minutes(v, allow_24=True)
        return v.strip()

    @model_validator(mode="after")
    def _not_empty(self) -> "ScheduleWindow":
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: an empty window "
                             "(00:00-24:00 is a whole day)")
        return self

    def spans(self) -> list[tuple[int, int]]:
        """Minutes of the week ``[a, b)`` the window covers (may run past the week's end: wrap)."""
        a = _minutes(self.start, False)
        b = _minutes(self.end, True)
        if b <= a:
            b += 1440  # ends the next day
        return [(DAYS.index(d) * 1440 + a, DAYS.index(d) * 1440 + b) for d in self.days]


class ArmingConfig(_Section):
    """The ``[arming]`` section: default state, schedules, what disarmed means."""

    default: Literal["armed", "disarmed"] = Field(
        "armed", description="State outside every schedule window (and with no schedule)")
    schedule: list[ScheduleWindow] = Field(
        default_factory=list, max_length=64,
        description="[[arming.schedule]] windows (state, days, start, end); windows with different states "
        "must not overlap")
    record_when_disarmed: bool = Field(
        False, description="While disarmed, still store (and publish) events, with alerted = false; "
        "off: disarmed records nothing")
    mqtt_commands: bool = Field(
        True, description="Accept arm/disarm/mute commands on <prefix>/arming/set (Home Assistant switch, "
        "select and buttons); anyone who may publish there can disarm the alarm: protect the broker")
    state_file: str = Field(STATE_FILE, description="File in the state directory that keeps the state "
                            "across restarts")

    @field_validator("state_file")
    @classmethod
    def _bare_name(cls, v: str) -> str:
        if not v or "/" in v or v in (".", ".."):
            raise ValueError(f"{v!r} must be a plain file name (it lives in the state directory)")
        return v

    @model_validator(mode="after")
    def _no_conflicts(self) -> "ArmingConfig":
        owner: list[int | None] = [None] * WEEK_MINUTES
        for i, w in enumerate(self.schedule):
            for a, b in w.spans():
                for m in range(a, b):
                    j = owner[m % WEEK_MINUTES]
                    if j is not None and self.schedule[j].state != w.state:
                        raise ValueError(
                            f"schedule windows {j} ({self.schedule[j].state} {self.schedule[j].start}-"
                            f"{self.schedule[j].end}) and {i} ({w.state} {w.start}-{w.end}) overlap on "
                            f"{DAYS[(m % WEEK_MINUTES) // 1440]} at {(m % 1440) // 60:02d}:{m % 60:02d} "
                            "with different states")
                    owner[m % WEEK_MINUTES] = i
        return self

    def week(self) -> list[str]:
        """The schedule as one state per minute of the week (Monday 00:00 first)."""
        out = [self.default] * WEEK_MINUTES
        for w in self.schedule:
            for a, b in w.spans():
                for m in range(a, b):
                    out[m % WEEK_MINUTES] = w.state
        return out
