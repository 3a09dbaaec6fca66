"""Mergeable, serialisable sketches of a column: the shape shared by the reference
profile and every monitoring window.

A sketch holds counts over bins fixed by the reference (so two sketches over the same
edges merge by addition), plus moments and missing counts. Updates are vectorised.
No I/O, clocks or logging here.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def quantile_edges(sample: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior bin edges from the sample's quantiles (duplicates removed).

    The bins are open at both tails: values below the first edge fall in bin 0 and
    values above the last in the final bin, so a window never falls outside them.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2; got {n_bins}")
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return np.zeros(0)
    qs = np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(qs)


class NumericSketch:
    """Histogram over fixed edges (with open tails), moments, missing count, range.

    Examples
    --------
    >>> s = NumericSketch(np.array([0.0, 1.0]))
    >>> s.update(np.array([-1.0, 0.5, 2.0, np.nan]))
    >>> s.counts.tolist(), s.missing, s.n
    ([1, 1, 1], 1, 3)
    """

    __slots__ = ("edges", "counts", "missing", "n", "mean", "m2", "minimum", "maximum")

    def __init__(self, edges: np.ndarray):
        self.edges = np.asarray(edges, dtype=np.float64)
        self.counts = np.zeros(self.edges.size + 1, dtype=np.int64)
        self.missing = 0
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.minimum = np.inf
        self.maximum = -np.inf

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(values)
        x = values[ok] if not ok.all() else values
        self.missing += int(values.size - x.size)
        if x.size == 0:
            return
        self.counts += np.bincount(np.searchsorted(self.edges, x, side="right"), minlength=self.counts.size)
        with np.errstate(over="ignore", invalid="ignore"):  # extreme values: moments go inf, honestly
            mean = float(x.mean())
            self._merge_moments(x.size, mean, float(((x - mean) ** 2).sum()))
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))

    def _merge_moments(self, n_b: int, mean_b: float, m2_b: float) -> None:
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.n = n

    def merge(self, other: "NumericSketch") -> "NumericSketch":
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge sketches over different edges")
        out = NumericSketch(self.edges)
        out.counts = self.counts + other.counts
        out.missing = self.missing + other.missing
        out.n, out.mean, out.m2 = self.n, self.mean, self.m2
        if other.n:
            out._merge_moments(other.n, other.mean, other.m2)
        out.minimum = min(self.minimum, other.minimum)
        out.maximum = max(self.maximum, other.maximum)
        return out

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else float("nan")

    @property
    def missing_rate(self) -> float:
        total = self.n + self.missing
        return self.missing / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist(), "missing": self.missing,
                "n": self.n, "mean": self.mean, "m2": self.m2,
                "min": None if self.n == 0 else self.minimum, "max": None if self.n == 0 else self.maximum}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NumericSketch":
        s = cls(np.asarray(d["edges"], dtype=np.float64))
        s.counts = np.asarray(d["counts"], dtype=np.int64)
        s.missing, s.n, s.mean, s.m2 = int(d["missing"]), int(d["n"]), float(d["mean"]), float(d["m2"])
        s.minimum = np.inf if d["min"] is None else float(d["min"])
        s.maximum = -np.inf if d["max"] is None else float(d["max"])
        return s


class CategoricalSketch:
    """Counts per category code, plus one bucket for unseen values and a missing count.

    Codes follow :mod:`monitoring.validation`: ``0..k-1`` known, -1 missing, -2 unseen.
    """

    __slots__ = ("n_categories", "counts", "unseen", "missing")

    def __init__(self, n_categories: int):
        self.n_categories = int(n_categories)
        self.counts = np.zeros(self.n_categories, dtype=np.int64)
        self.unseen = 0
        self.missing = 0

    def update(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes)
        known = codes >= 0
        if known.all():
            self.counts += np.bincount(codes, minlength=self.n_categories)[: self.n_categories]
            return
        self.counts += np.bincount(codes[known], minlength=self.n_categories)[: self.n_categories]
        self.missing += int((codes == -1).sum())
        self.unseen += int((codes == -2).sum())

    def merge(self, other: "CategoricalSketch") -> "CategoricalSketch":
        if self.n_categories != other.n_categories:
            raise ValueError("cannot merge sketches over different categories")
        out = CategoricalSketch(self.n_categories)
        out.counts = self.counts + other.counts
        out.unseen = self.unseen + other.unseen
        out.missing = self.missing + other.missing
        return out

    @property
    def n(self) -> int:
        return int(self.counts.sum()) + self.unseen

    def to_dict(self) -> dict[str, Any]:
        return {"n_categories": self.n_categories, "counts": self.counts.tolist(),
                "unseen": self.unseen, "missing": self.missing}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CategoricalSketch":
        s = cls(int(d["n_categories"]))
        s.counts = np.asarray(d["counts"], dtype=np.int64)
        s.unseen, s.missing = int(d["unseen"]), int(d["missing"])
        return s
