"""Plain descriptive statistics of a sketch, for people reading drift evidence: a numeric
feature's mean, sd and quantiles, a categorical feature's top categories and their shares,
the reference's and a window's side by side.

Numeric sketches keep counts over the reference's bins (open tails) and exact moments, so
the mean and sd are exact and the quantiles are interpolated linearly inside the bin that
holds them (the tails bounded by the observed minimum and maximum): accurate to within one
bin, which is what a reader comparing reference and window needs. Pure functions, no I/O;
non-finite figures come back as None (JSON-ready).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from monitoring.stats.sketches import CategoricalSketch, NumericSketch
from monitoring.values import finite_or_none

#: Quantiles shown for numeric features, as (name, q).
QUANTILES = (("p5", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95))
#: Categories shown per side (the union of both sides' top ones is listed for each).
TOP_CATEGORIES = 5


def binned_quantiles(counts: np.ndarray, edges: np.ndarray, low: float, high: float,
                     qs: Sequence[float]) -> list[float | None]:
    """Quantiles of a histogram over ``edges`` with open tails (``len(counts) ==
    len(edges) + 1``), each bin's values spread evenly between its bounds; the open tails
    end at ``low`` and ``high`` (the observed range).

    >>> binned_quantiles(np.array([0, 10, 0]), np.array([0.0, 10.0]), 0.0, 10.0, [0.5])
    [5.0]
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or not (math.isfinite(low) and math.isfinite(high)):
        return [None] * len(qs)
    lo = np.clip(np.concatenate([[low], edges]), low, high)
    hi = np.clip(np.concatenate([edges, [high]]), low, high)
    cum = np.cumsum(counts)
    out: list[float | None] = []
    for q in qs:
        rank = q * total
        k = int(np.searchsorted(cum, rank, side="left"))
        k = min(k, counts.size - 1)
        before = cum[k] - counts[k]
        frac = (rank - before) / counts[k] if counts[k] else 0.0
        out.append(finite_or_none(lo[k] + min(max(frac, 0.0), 1.0) * (hi[k] - lo[k])))
    return out


def numeric_summary(s: NumericSketch) -> dict[str, Any]:
    """``{"n", "missing_rate", "mean", "sd", "min", "p5", "p25", "p50", "p75", "p95", "max"}``."""
    has = s.n > 0
    out: dict[str, Any] = {"n": int(s.n), "missing_rate": finite_or_none(s.missing_rate), "mean": finite_or_none(s.mean) if has else None,
                           "sd": finite_or_none(math.sqrt(s.variance)) if s.n > 1 and s.variance >= 0 else None,
                           "min": finite_or_none(s.minimum) if has else None}
    qs = binned_quantiles(s.counts, s.edges, s.minimum, s.maximum, [q for _, q in QUANTILES]) if has \
        else [None] * len(QUANTILES)
    out.update({name: v for (name, _), v in zip(QUANTILES, qs)})
    out["max"] = finite_or_none(s.maximum) if has else None
    return out


def _shares(s: CategoricalSketch) -> np.ndarray:
    total = s.counts.sum() + s.unseen
    return s.counts / total if total else np.zeros(s.counts.size)


def categorical_summaries(ref: CategoricalSketch, win: CategoricalSketch, categories: Sequence[Any],
                          top: int = TOP_CATEGORIES) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reference, window) summaries: ``{"n", "missing_rate", "unseen_share", "top": {category:
    share}, "other_share"}``. Both ``top`` list the same categories (the union of each side's
    ``top`` most frequent, most frequent in the window first), so they read side by side;
    shares are of the non-missing values; ``other_share`` is what the listed ones leave."""
    rs, ws = _shares(ref), _shares(win)
    pick = list(dict.fromkeys([int(i) for i in np.argsort(-ws, kind="stable")[:top] if ws[i] > 0]
                              + [int(i) for i in np.argsort(-rs, kind="stable")[:top] if rs[i] > 0]))
    pick.sort(key=lambda i: (-ws[i], -rs[i]))

    def side(s: CategoricalSketch, shares: np.ndarray) -> dict[str, Any]:
        total = s.counts.sum() + s.unseen
        listed = {str(categories[i]): float(shares[i]) for i in pick}
        unseen = s.unseen / total if total else 0.0
        return {"n": int(total), "missing_rate": s.missing / (total + s.missing) if total + s.missing else 0.0,
                "unseen_share": float(unseen), "top": listed,
                "other_share": max(0.0, 1.0 - sum(listed.values()) - unseen) if total else 0.0}

    return side(ref, rs), side(win, ws)
