"""Typed results that cross module boundaries: a scored performance window.

(A closed monitoring window is :class:`monitoring.runtime.windows.ClosedWindow`, built on
:class:`monitoring.stats.evaluate.WindowReport`.) Each carries the fields code decides on
as attributes, and ``stored``: the JSON form the store keeps, the views serve and the alert
observers read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class PerformanceResult:
    """One scored window (from :func:`monitoring.stats.performance.window_performance`).

    ``final``: labels are complete enough (coverage target met, or the label delay passed)
    for the realized metrics to count; ``status``: ``ok``, ``insufficient labels`` or
    ``in-sample baseline``; ``alerting``: realized metrics may be judged against the band."""

    window_id: int
    predictions: int
    labelled: int
    coverage: float
    final: bool
    status: str
    alerting: bool
    realized: Mapping[str, float] | None
    estimated: Mapping[str, Mapping[str, float | None]] | None
    degraded: tuple[str, ...]
    stored: Mapping[str, Any]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PerformanceResult":
        return cls(window_id=int(d["window_id"]), predictions=int(d["predictions"]), labelled=int(d["labelled"]),
                   coverage=float(d["coverage"]), final=bool(d["final"]), status=str(d["status"]),
                   alerting=bool(d.get("alerting")), realized=d.get("realized"), estimated=d.get("estimated"),
                   degraded=tuple(d.get("degraded") or ()), stored=d)
