"""The base of every configuration section."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Section(BaseModel):
    # nan/inf pass a `gt=0` bound (inf) or every bound (nan): never a sane setting here.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def pin_off(v: Any) -> Any:
    """None for a pin switched off: TOML has no null, so ``"none"``/``"off"``/``""`` or false (else ``v``)."""
    if v is False or (isinstance(v, str) and v.strip().lower() in ("none", "off", "")):
        return None
    return v
