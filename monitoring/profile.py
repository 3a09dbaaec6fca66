"""The reference profile: what the model's inputs and outputs looked like at registration.

Built in chunks (bounded memory, any data size): bin edges come from a bounded
reservoir sample's quantiles, counts and moments from every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .multivariate import PcaDetector
from .schema import ModelSchema
from .sketches import CategoricalSketch, NumericSketch, quantile_edges

PROFILE_VERSION = 1
DEFAULT_BINS = 30
CONFIDENCE_EDGES = np.linspace(0.1, 0.9, 9)  # ten bins over [0, 1]


@dataclass
class PredictionSketch:
    """Distribution of the model's answers: class mix and confidence, or values."""

    classes: CategoricalSketch | None
    confidence: NumericSketch | None
    values: NumericSketch | None

    @classmethod
    def empty(cls, schema: ModelSchema, value_edges: np.ndarray | None = None) -> "PredictionSketch":
        if schema.task == "classification":
            return cls(CategoricalSketch(len(schema.classes)), NumericSketch(CONFIDENCE_EDGES), None)
        return cls(None, None, NumericSketch(value_edges if value_edges is not None else np.zeros(0)))

    def update(self, class_codes: np.ndarray | None, proba: np.ndarray | None, values: np.ndarray | None) -> None:
        if self.classes is not None and class_codes is not None:
            self.classes.update(class_codes)
            if proba is not None:
                self.confidence.update(proba.max(axis=1))
        if self.values is not None and values is not None:
            self.values.update(values)

    def merge(self, other: "PredictionSketch") -> "PredictionSketch":
        m = lambda a, b: None if a is None else a.merge(b)  # noqa: E731
        return PredictionSketch(m(self.classes, other.classes), m(self.confidence, other.confidence),
                                m(self.values, other.values))

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if v is None else v.to_dict())
                for k, v in (("classes", self.classes), ("confidence", self.confidence), ("values", self.values))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PredictionSketch":
        return cls(None if d["classes"] is None else CategoricalSketch.from_dict(d["classes"]),
                   None if d["confidence"] is None else NumericSketch.from_dict(d["confidence"]),
                   None if d["values"] is None else NumericSketch.from_dict(d["values"]))


class Profile:
    """Sketches of every feature and of the predictions over some rows.

    The reference profile and each monitoring window are both a ``Profile``; a window
    is created with :meth:`empty_like` so its bins match the reference exactly.

    Numeric updates accumulate in one block of arrays (vectorised across features) and
    are folded into the per-feature sketches when ``numeric`` is read, so that feeding a
    window batch by batch costs a handful of numpy calls per batch, not per feature.
    """

    def __init__(self, numeric: dict[str, NumericSketch], categorical: dict[str, CategoricalSketch],
                 predictions: PredictionSketch, rows: int = 0, multivariate: NumericSketch | None = None,
                 detector: PcaDetector | None = None):
        self._numeric = numeric
        self.categorical = categorical
        self.predictions = predictions
        self.rows = rows
        #: log PCA-reconstruction errors of the rows (None without a multivariate detector)
        self.multivariate = multivariate
        #: the fitted detector; only the reference profile carries it
        self.detector = detector
        self._block: _NumericBlock | None = None

    @property
    def numeric(self) -> dict[str, NumericSketch]:
        if self._block is not None and self._block.pending:
            self._block.fold_into(list(self._numeric.values()))
        return self._numeric

    def __repr__(self) -> str:
        return f"Profile(rows={self.rows}, numeric={len(self._numeric)}, categorical={len(self.categorical)})"

    @classmethod
    def empty(cls, schema: ModelSchema, edges: Mapping[str, np.ndarray],
              prediction_edges: np.ndarray | None = None, detector: PcaDetector | None = None) -> "Profile":
        return cls(
            numeric={f.name: NumericSketch(edges[f.name]) for f in schema.numeric},
            categorical={f.name: CategoricalSketch(len(f.categories)) for f in schema.categorical},
            predictions=PredictionSketch.empty(schema, prediction_edges),
            multivariate=None if detector is None else detector.empty_sketch(),
            detector=detector,
        )

    def empty_like(self) -> "Profile":
        p = self.predictions
        return Profile(
            numeric={k: NumericSketch(s.edges) for k, s in self.numeric.items()},
            categorical={k: CategoricalSketch(s.n_categories) for k, s in self.categorical.items()},
            predictions=PredictionSketch(
                None if p.classes is None else CategoricalSketch(p.classes.n_categories),
                None if p.confidence is None else NumericSketch(p.confidence.edges),
                None if p.values is None else NumericSketch(p.values.edges)),
            multivariate=None if self.multivariate is None else NumericSketch(self.multivariate.edges),
        )

    def update(self, numeric: np.ndarray, codes: np.ndarray, *, class_codes: np.ndarray | None = None,
               proba: np.ndarray | None = None, values: np.ndarray | None = None,
               mv_errors: np.ndarray | None = None) -> None:
        """Add a columnar batch (columns in schema order, as the validator builds them).

        Vectorised across features: one pass over the matrix for missing values, moments
        and ranges, one ``bincount`` for every numeric histogram and one for every
        category table; only the per-feature bin search stays a loop."""
        if self._numeric:
            if self._block is None:
                self._block = _NumericBlock(list(self._numeric.values()))
            self._block.add(numeric)
        if self.categorical:
            _update_categorical_block(list(self.categorical.values()), codes)
        self.predictions.update(class_codes, proba, values)
        if self.multivariate is not None and mv_errors is not None:
            self.multivariate.update(mv_errors)
        self.rows += int(numeric.shape[0])

    def merge(self, other: "Profile") -> "Profile":
        return Profile(
            numeric={k: s.merge(other.numeric[k]) for k, s in self.numeric.items()},
            categorical={k: s.merge(other.categorical[k]) for k, s in self.categorical.items()},
            predictions=self.predictions.merge(other.predictions),
            rows=self.rows + other.rows,
            multivariate=None if self.multivariate is None else self.multivariate.merge(other.multivariate),
            detector=self.detector,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"version": PROFILE_VERSION, "rows": self.rows,
                "numeric": {k: s.to_dict() for k, s in self.numeric.items()},
                "categorical": {k: s.to_dict() for k, s in self.categorical.items()},
                "predictions": self.predictions.to_dict(),
                "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
                "detector": None if self.detector is None else self.detector.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Profile":
        if d.get("version") != PROFILE_VERSION:
            raise ValueError(f"unsupported profile version {d.get('version')!r}; expected {PROFILE_VERSION}")
        return cls(
            numeric={k: NumericSketch.from_dict(v) for k, v in d["numeric"].items()},
            categorical={k: CategoricalSketch.from_dict(v) for k, v in d["categorical"].items()},
            predictions=PredictionSketch.from_dict(d["predictions"]),
            rows=int(d["rows"]),
            multivariate=None if d.get("multivariate") is None else NumericSketch.from_dict(d["multivariate"]),
            detector=None if d.get("detector") is None else PcaDetector.from_dict(d["detector"]),
        )


class _NumericBlock:
    """Pending numeric updates for all features at once: bin counts, and moments merged
    with Chan's formula across batches, vectorised over features."""

    def __init__(self, sketches: list[NumericSketch]):
        self.edges = [s.edges for s in sketches]
        self.sizes = [s.counts.size for s in sketches]
        self.width = max(self.sizes)
        f = len(sketches)
        self.offsets = np.arange(f, dtype=np.int64)[:, None] * self.width
        self.counts = np.zeros(f * self.width, dtype=np.int64)
        self.n = np.zeros(f)
        self.mean = np.zeros(f)
        self.m2 = np.zeros(f)
        self.min = np.full(f, np.inf)
        self.max = np.full(f, -np.inf)
        self.missing = np.zeros(f, dtype=np.int64)
        self.pending = False

    def add(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return
        Xt = np.ascontiguousarray(X.T)
        nan = np.isnan(Xt)
        any_nan = bool(nan.any())
        rows = Xt.shape[1]
        if any_nan:
            n_b = (rows - nan.sum(axis=1)).astype(np.float64)
            filled = np.where(nan, 0.0, Xt)
        else:
            n_b = np.full(Xt.shape[0], float(rows))
            filled = Xt
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean_b = filled.sum(axis=1) / np.maximum(n_b, 1)
            dev = filled - mean_b[:, None]
            if any_nan:
                dev[nan] = 0.0
            m2_b = np.einsum("ij,ij->i", dev, dev)
            n = self.n + n_b
            delta = mean_b - self.mean
            w = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            self.m2 += m2_b + delta * delta * self.n * w
            self.mean += delta * w
        self.n = n
        if any_nan:
            self.missing += nan.sum(axis=1)
            np.minimum(self.min, np.where(nan, np.inf, Xt).min(axis=1), out=self.min)
            np.maximum(self.max, np.where(nan, -np.inf, Xt).max(axis=1), out=self.max)
        else:
            np.minimum(self.min, Xt.min(axis=1), out=self.min)
            np.maximum(self.max, Xt.max(axis=1), out=self.max)
        idx = np.empty(Xt.shape, dtype=np.int64)
        for j, e in enumerate(self.edges):
            idx[j] = np.searchsorted(e, Xt[j], side="right")
        idx += self.offsets
        self.counts += np.bincount(idx[~nan] if any_nan else idx.ravel(), minlength=self.counts.size)
        self.pending = True

    def fold_into(self, sketches: list[NumericSketch]) -> None:
        counts = self.counts.reshape(len(sketches), self.width)
        for j, s in enumerate(sketches):
            s.missing += int(self.missing[j])
            nb = int(self.n[j])
            if nb:
                s.counts += counts[j, : self.sizes[j]]
                s._merge_moments(nb, float(self.mean[j]), float(self.m2[j]))
                s.minimum = min(s.minimum, float(self.min[j]))
                s.maximum = max(s.maximum, float(self.max[j]))
        self.counts[:] = 0
        self.n[:] = 0
        self.mean[:] = 0
        self.m2[:] = 0
        self.min[:] = np.inf
        self.max[:] = -np.inf
        self.missing[:] = 0
        self.pending = False


def _update_categorical_block(sketches: list[CategoricalSketch], codes: np.ndarray) -> None:
    C = np.asarray(codes)
    if C.shape[0] == 0:
        return
    width = max(s.n_categories for s in sketches) + 2  # + missing (-1) and unseen (-2) slots
    shifted = (C + 2) + np.arange(len(sketches)) * width  # -2 -> 0, -1 -> 1, k -> k + 2
    counts = np.bincount(shifted.ravel(), minlength=width * len(sketches)).reshape(len(sketches), width)
    for j, s in enumerate(sketches):
        s.unseen += int(counts[j, 0])
        s.missing += int(counts[j, 1])
        s.counts += counts[j, 2: 2 + s.n_categories]


def edges_from_sample(schema: ModelSchema, numeric_sample: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """Per numeric feature: the reference minimum, interior quantile edges from a sample,
    and just above the reference maximum. The first and last bins then count exactly the
    values outside the reference range."""
    out = {}
    for j, f in enumerate(schema.numeric):
        edges = quantile_edges(numeric_sample[:, j], n_bins)
        if f.minimum is not None and f.maximum is not None:
            edges = np.unique(np.concatenate([[f.minimum], edges, [np.nextafter(f.maximum, np.inf)]]))
        out[f.name] = edges
    return out


def out_of_range(sketch: NumericSketch) -> int:
    """Values below the reference minimum or above its maximum (see :func:`edges_from_sample`)."""
    return int(sketch.counts[0] + sketch.counts[-1]) if sketch.counts.size > 1 else 0
