"""One conversion of nested results to what ``json.dumps`` writes (web status, bench report)."""

from __future__ import annotations

from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` with JSON types only: dicts (keys as str), lists, str, int, float, bool, None.

    Tuples become lists, numpy scalars their Python value, anything else (a Path, an
    enum) its ``str``: a status page or a report is written whole, never refused for one
    odd value.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
