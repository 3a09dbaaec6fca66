"""Drift impact: which drifted features matter to the model.

A drifted feature the model ignores matters less than a mildly drifted one it leans on. At
registration each feature's permutation importance is measured on the validation rows
(``models.insight``); here it is normalised into weights (negative importances, i.e.
noise, count as 0; weights sum to 1) and each window's features are ranked by

    impact = weight x effect

where ``effect`` is the drift effect the window report already carries (tail-capped
Wasserstein distance in robust sds for numeric features, largest Cohen's h over the known
categories for categorical ones),
so two features shifted by the same amount have the same raw drift score and effect, and
their impact differs only by how much the model relies on each.

The raw drift score and the flag are untouched: impact ranks, it never judges (no alert
fires on it). Pure functions on JSON-ready reports; a report without features (a window too
small to judge) gains nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Entries kept in a window's ``impact_ranking`` (every feature keeps its own ``impact``).
TOP = 10


def weights(importance: Mapping[str, float]) -> dict[str, float]:
    """Importances as weights: negatives and non-finite values as 0, summing to 1 (all 0
    when no feature helps the model).

    >>> weights({"a": 3.0, "b": 1.0, "c": -0.2})
    {'a': 0.75, 'b': 0.25, 'c': 0.0}
    """
    clean = {k: (float(v) if v is not None and math.isfinite(float(v)) and v > 0 else 0.0)
             for k, v in importance.items()}
    total = sum(clean.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in clean.items()}


def annotate(report: dict[str, Any], weight: Mapping[str, float], top: int = TOP) -> dict[str, Any]:
    """Add ``impact`` (and ``importance``: the feature's weight) to every feature of a
    JSON-ready window report and ``impact_ranking``: the ``top`` features by impact, highest
    first, each with its raw drift ``score``. Changes ``report`` in place and returns it."""
    features = report.get("features") or []
    if not features:
        return report
    for f in features:
        w = weight.get(f.get("feature"))
        effect = f.get("effect")
        f["importance"] = w
        f["impact"] = None if w is None or effect is None else float(w * effect)
    ranked = sorted((f for f in features if f["impact"] is not None), key=lambda f: (-f["impact"], f["feature"]))
    report["impact_ranking"] = [{"feature": f["feature"], "impact": f["impact"], "importance": f["importance"],
                                 "effect": f.get("effect"), "score": f.get("score"), "flagged": f.get("flagged")}
                                for f in ranked[:top]]
    return report


def ranking(report: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """A stored window report's impact ranking (None when it has none: no importance stored
    with the model, or a window too small to judge)."""
    if not report:
        return None
    return report.get("impact_ranking")
