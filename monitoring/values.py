"""Plain values at the edges: the one rule for turning a number that may be NaN, infinite,
a numpy scalar or missing into what JSON, the store and the evidence of an alert can hold.

A leaf: imports nothing of Vigil, so every layer may use it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import fields, is_dataclass
from typing import Any


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float, or None when it is missing, NaN or infinite.

    >>> finite_or_none(2), finite_or_none(float("nan")), finite_or_none(None)
    (2.0, None, None)
    """
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def json_ready(v: Any) -> Any:
    """A JSON-ready copy: dataclasses become dicts (as ``asdict`` makes them, in one pass
    without its deep copies), tuples lists, non-finite floats None, numpy scalars Python ones.

    >>> json_ready({"a": (1, float("inf"))})
    {'a': [1, None]}
    """
    np = sys.modules.get("numpy")  # not imported: then nothing is a numpy scalar (and config stays light)
    if np is not None and isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return finite_or_none(v)
    if isinstance(v, dict):
        return {k: json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_ready(x) for x in v]
    if is_dataclass(v) and not isinstance(v, type):
        return {f.name: json_ready(getattr(v, f.name)) for f in fields(v)}
    return v
