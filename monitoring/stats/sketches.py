"""Mergeable, serialisable sketches of a column: the shape shared by the reference
profile and every monitoring window.

A sketch holds counts over bins fixed by the reference (so two sketches over the same
edges merge by addition), plus moments and missing counts. Updates are vectorised.
Both sketches are :class:`~monitoring.stats.mergeable.Mergeable`. No I/O, clocks or
logging here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from monitoring.stats.mergeable import Mergeable


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


def apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to exactly ``total``, proportional to ``counts`` (largest
    remainders; ties go to the lower bin). All zeros when ``counts`` sums to zero.

    >>> apportion(np.array([1, 1, 2]), 5).tolist()
    [1, 1, 3]
    """
    counts = np.asarray(counts, dtype=np.float64)
    out = np.zeros(counts.size, dtype=np.int64)
    s = counts.sum()
    if total <= 0 or s <= 0:
        return out
    exact = counts * (total / s)
    out[:] = np.floor(exact)
    short = int(total - out.sum())
    if short > 0:
        out[np.argsort(-(exact - out), kind="stable")[:short]] += 1
    return out


def _scaled_count(count: int, total: int, rows: int) -> int:
    """``count`` of ``total`` rows, scaled to ``rows`` rows."""
    return int(round(count * rows / total)) if total else 0


class NumericSketch(Mergeable):
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
            self.add_moments(x.size, mean, float(((x - mean) ** 2).sum()))
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))

    def add_moments(self, n_b: int, mean_b: float, m2_b: float) -> None:
        """Fold in ``n_b`` more values with mean ``mean_b`` and sum of squared deviations
        ``m2_b`` (Chan et al.'s parallel update); counts and range are the caller's."""
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.n = n

    def scaled(self, rows: int, total: int) -> "NumericSketch":
        """The sketch of ``rows`` rows distributed exactly like these ``total`` rows: the
        counts and missing values in the same proportions (rounded to integers that add up),
        the same mean, variance and range."""
        out = NumericSketch(self.edges)
        n = _scaled_count(self.n, total, rows)
        out.missing = _scaled_count(self.n + self.missing, total, rows) - n
        if n and self.n:
            out.counts = apportion(self.counts, n)
            out.n, out.mean = n, self.mean
            out.m2 = self.m2 * (n - 1) / (self.n - 1) if self.n > 1 else 0.0
            out.minimum, out.maximum = self.minimum, self.maximum
        return out

    def empty_like(self) -> "NumericSketch":
        return NumericSketch(self.edges)

    def merge(self, other: "NumericSketch") -> "NumericSketch":
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge sketches over different edges")
        out = NumericSketch(self.edges)
        out.counts = self.counts + other.counts
        out.missing = self.missing + other.missing
        out.n, out.mean, out.m2 = self.n, self.mean, self.m2
        if other.n:
            out.add_moments(other.n, other.mean, other.m2)
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


class CategoricalSketch(Mergeable):
    """Counts per category code, plus one bucket for unseen values and a missing count.

    Codes follow :mod:`monitoring.intake.validation`: ``0..k-1`` known, -1 missing, -2 unseen.
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

    def scaled(self, rows: int, total: int) -> "CategoricalSketch":
        """The sketch of ``rows`` rows distributed exactly like these ``total`` rows (see
        :meth:`NumericSketch.scaled`); unseen values count as one more category."""
        out = CategoricalSketch(self.n_categories)
        n = _scaled_count(self.n, total, rows)
        out.missing = _scaled_count(self.n + self.missing, total, rows) - n
        both = apportion(np.append(self.counts, self.unseen), n)
        out.counts, out.unseen = both[:-1].copy(), int(both[-1])
        return out

    def empty_like(self) -> "CategoricalSketch":
        return CategoricalSketch(self.n_categories)

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


class BinIndex:
    """Bin indexes of many features' values at once, equal to ``searchsorted(edges_j, x,
    side="right")`` per feature, laid out for a single ``bincount``: feature *j*'s bin *b*
    is slot ``j * width + b``.

    A binary search per value is the slow part of updating a sketch, so each feature's
    range between its outer edges is cut into equal cells (a power of two, at most
    ``max_cells``, chosen so that no cell holds two edges). A value's cell is one
    subtract, multiply and truncate; its bin is the number of edges in lower cells plus
    whether it reaches the edge in its own cell. The map from value to cell is monotone in
    floating point (each step rounds monotonically), so an edge in a lower cell is never
    above the value and one in a higher cell never at or below it: the bins are exact.
    A feature whose edges cannot be separated (fewer than two, or far closer together than
    its range / ``max_cells``) keeps the binary search.

    Examples
    --------
    >>> ix = BinIndex([np.array([0.0, 1.0]), np.array([5.0])])
    >>> ix.width, ix.index(np.array([[-1.0, 0.0, 2.0], [4.0, 5.0, 6.0]])).tolist()
    (3, [[0, 1, 2], [3, 4, 4]])
    """

    def __init__(self, edges: list[np.ndarray], max_cells: int = 4096):
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        self.sizes = [e.size + 1 for e in self.edges]
        self.width = max(self.sizes, default=1)
        self.offsets = np.arange(len(self.edges), dtype=np.int64) * self.width
        tables = [_cell_table(e, max_cells) for e in self.edges]
        #: features binned through the cell tables, and those searched
        self.fast = [j for j, t in enumerate(tables) if t is not None]
        self.slow = [j for j, t in enumerate(tables) if t is None]
        fast = [tables[j] for j in self.fast]
        cells = np.array([t[2].size for t in fast], dtype=np.int64)
        self._lo = np.array([t[0] for t in fast], dtype=np.float64)[:, None]
        self._scale = np.array([t[1] for t in fast], dtype=np.float64)[:, None]
        self._top = (cells - 1).astype(np.float64)[:, None]
        self._start = (np.cumsum(cells) - cells)[:, None]  # where each feature's cells begin
        self._base = np.concatenate([t[2] + self.offsets[j] for j, t in zip(self.fast, fast)]
                                    or [np.zeros(0, dtype=np.int64)])
        self._edge_in = np.concatenate([t[3] for t in fast] or [np.zeros(0)])

    def index(self, values: np.ndarray) -> np.ndarray:
        """Slots of a ``(features, rows)`` float64 matrix holding no NaN (int64, same shape)."""
        every = len(self.fast) == len(self.edges)
        if not every:
            out = np.empty(values.shape, dtype=np.int64)
        if self.fast:
            x = values if every else values[self.fast]
            with np.errstate(over="ignore"):  # far outside the edges: +-inf, clipped to an end cell
                t = x - self._lo
                t *= self._scale
            np.clip(t, 0.0, self._top, out=t)
            cell = t.astype(np.int64)
            cell += self._start
            slot = self._base.take(cell)
            slot += x >= self._edge_in.take(cell)
            if every:
                return slot
            out[self.fast] = slot
        for j in self.slow:
            out[j] = np.searchsorted(self.edges[j], values[j], side="right")
            out[j] += self.offsets[j]
        return out


def _cell_table(edges: np.ndarray, max_cells: int):
    """(lo, scale, base, edge_in) for :class:`BinIndex`, or None when the edges cannot be
    put one to a cell. ``base[c]`` counts the edges in cells below ``c``; ``edge_in[c]``
    is the edge in cell ``c`` or NaN (no value reaches NaN)."""
    if edges.size < 2 or not np.isfinite(edges).all():
        return None
    lo = float(edges[0])
    cells = 64
    while cells <= max_cells:
        scale = cells / (float(edges[-1]) - lo)  # Python floats: overflow gives inf
        if not (math.isfinite(scale) and scale > 0):
            return None
        # the very operations BinIndex.index applies to values
        with np.errstate(over="ignore"):
            t = (edges - lo) * scale
        np.clip(t, 0.0, cells - 1, out=t)
        own = t.astype(np.int64)
        if (np.diff(own) > 0).all():
            base = np.searchsorted(own, np.arange(cells), side="left").astype(np.int64)
            edge_in = np.full(cells, np.nan)
            edge_in[own] = edges
            return lo, scale, base, edge_in
        cells *= 2
    return None
