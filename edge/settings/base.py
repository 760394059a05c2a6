"""The base of every configuration section."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    # nan/inf pass a `gt=0` bound (inf) or every bound (nan): never a sane setting here.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


#: An overlap threshold (a share of a box's area, or an IoU): above 0, at most 1.
Overlap = Annotated[float, Field(gt=0.0, le=1.0)]
#: How often a settled track runs a stage again, in frames (1: every frame).
EveryFrames = Annotated[int, Field(ge=1, le=300)]
#: Seconds before the same track may alert again (at most a day).
Cooldown = Annotated[float, Field(ge=0.0, le=86400.0)]


def pin_off(v: Any) -> Any:
    """None for a pin switched off: TOML has no null, so ``"none"``/``"off"``/``""`` or false (else ``v``)."""
    if v is False or (isinstance(v, str) and v.strip().lower() in ("none", "off", "")):
        return None
    return v
