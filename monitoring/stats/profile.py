"""The reference profile: what the model's inputs and outputs looked like at registration.

Built in chunks (bounded memory, any data size): bin edges come from a bounded
reservoir sample's quantiles, counts and moments from every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from monitoring.stats.multivariate import PcaDetector
from monitoring.schema import ModelSchema
from monitoring.stats.mergeable import Mergeable
from monitoring.stats.sketches import BinIndex, CategoricalSketch, NumericSketch, quantile_edges

PROFILE_VERSION = 1
DEFAULT_BINS = 30
CONFIDENCE_EDGES = np.linspace(0.1, 0.9, 9)  # ten bins over [0, 1]
#: Rows that :meth:`Profile.update` buffers before folding them into the sketches, and the
#: size of the chunks a large batch is folded in: long enough that the fold's numpy calls
#: cost little per row, short enough that the buffer and the fold's temporaries stay small
#: (about 200 bytes a row at 25 features) and in cache.
FOLD_ROWS = 8192


@dataclass
class PredictionSketch(Mergeable):
    """Distribution of the model's answers: class mix and confidence, or values."""

    classes: CategoricalSketch | None
    confidence: NumericSketch | None
    values: NumericSketch | None

    @classmethod
    def empty(cls, schema: ModelSchema, value_edges: np.ndarray | None = None) -> "PredictionSketch":
        if schema.task == "classification":
            return cls(CategoricalSketch(len(schema.classes)), NumericSketch(CONFIDENCE_EDGES), None)
        return cls(None, None, NumericSketch(value_edges if value_edges is not None else np.zeros(0)))

    def update(self, class_codes: np.ndarray | None, proba: np.ndarray | None, values: np.ndarray | None,
               *, confidence: np.ndarray | None = None) -> None:
        """``confidence`` (each row's top probability) may be given instead of ``proba``."""
        if self.classes is not None and class_codes is not None:
            self.classes.update(class_codes)
            if proba is not None:
                confidence = proba.max(axis=1)
            if confidence is not None:
                self.confidence.update(confidence)
        if self.values is not None and values is not None:
            self.values.update(values)

    def empty_like(self) -> "PredictionSketch":
        e = lambda s: None if s is None else s.empty_like()  # noqa: E731
        return PredictionSketch(e(self.classes), e(self.confidence), e(self.values))

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


class Profile(Mergeable):
    """Sketches of every feature and of the predictions over some rows.

    The reference profile and each monitoring window are both a ``Profile``; a window
    is created with :meth:`empty_like` so its bins match the reference exactly. Profiles
    are :class:`~monitoring.stats.mergeable.Mergeable`: a merge keeps the detector of
    whichever side has one (only the reference carries it).

    :meth:`update` copies a batch into a buffer and returns; the buffered rows are folded
    into the sketches ``FOLD_ROWS`` at a time and whenever a sketch is read (``numeric``,
    ``categorical``, ``predictions``, ``multivariate``, :meth:`to_dict`, :meth:`merge`), so
    feeding a window batch by batch costs a few array copies per batch, and the binning,
    counting and moments run as one set of numpy calls, vectorised across features, per
    fold. Counts, missing counts and ranges do not depend on how rows were batched;
    moments only up to floating-point rounding.
    """

    def __init__(self, numeric: dict[str, NumericSketch], categorical: dict[str, CategoricalSketch],
                 predictions: PredictionSketch, rows: int = 0, multivariate: NumericSketch | None = None,
                 detector: PcaDetector | None = None):
        self._numeric = numeric
        self._categorical = categorical
        self._predictions = predictions
        self.rows = rows
        self._multivariate = multivariate
        #: the fitted detector; only the reference profile carries it
        self.detector = detector
        self._pending = _Pending()
        self._bins: BinIndex | None = None

    @property
    def numeric(self) -> dict[str, NumericSketch]:
        self._fold()
        return self._numeric

    @property
    def categorical(self) -> dict[str, CategoricalSketch]:
        self._fold()
        return self._categorical

    @property
    def predictions(self) -> PredictionSketch:
        self._fold()
        return self._predictions

    @property
    def multivariate(self) -> NumericSketch | None:
        """Log PCA-reconstruction errors of the rows (None without a multivariate detector)."""
        self._fold()
        return self._multivariate

    def __repr__(self) -> str:
        return f"Profile(rows={self.rows}, numeric={len(self._numeric)}, categorical={len(self._categorical)})"

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
        """An empty window over this profile's bins (without the detector: windows never
        carry it)."""
        out = Profile(  # bins only: nothing pending matters here
            numeric={k: s.empty_like() for k, s in self._numeric.items()},
            categorical={k: s.empty_like() for k, s in self._categorical.items()},
            predictions=self._predictions.empty_like(),
            multivariate=None if self._multivariate is None else self._multivariate.empty_like(),
        )
        if self._bins is None and self._numeric:
            self._bins = BinIndex([s.edges for s in self._numeric.values()])
        out._bins = self._bins  # same edges: every window shares the reference's lookup tables
        return out

    def expected_window(self, rows: int) -> "Profile":
        """A window of ``rows`` rows distributed exactly as this profile: every sketch
        scaled to ``rows`` rows (its counts in the reference's proportions, rounded to
        integers that add up; missing values at the reference's rate; the same moments and
        range). What a window of that size looks like under no drift, e.g. to fill the
        evaluator's null cache for that size before the first real one arrives."""
        total, p = self.rows, self.predictions  # (reading a sketch folds pending rows first)
        scale = lambda s: None if s is None else s.scaled(rows, total)  # noqa: E731
        out = self.empty_like()
        out._numeric = {k: scale(s) for k, s in self.numeric.items()}
        out._categorical = {k: scale(s) for k, s in self.categorical.items()}
        out._predictions = PredictionSketch(scale(p.classes), scale(p.confidence), scale(p.values))
        out._multivariate = scale(self.multivariate)
        out.rows = int(rows) if total else 0
        return out

    def update(self, numeric: np.ndarray, codes: np.ndarray, *, class_codes: np.ndarray | None = None,
               proba: np.ndarray | None = None, values: np.ndarray | None = None,
               mv_errors: np.ndarray | None = None) -> None:
        """Add a columnar batch (columns in schema order, as the validator builds them).

        A batch of at least ``FOLD_ROWS`` rows is folded at once, in chunks; a smaller one
        is copied into the buffer (the caller may reuse its arrays)."""
        n = int(numeric.shape[0])
        p = self._predictions
        batch = _Batch(
            numeric, codes,
            class_codes if p.classes is not None else None,
            proba.max(axis=1) if p.classes is not None and class_codes is not None and proba is not None else None,
            values if p.values is not None else None,
            mv_errors if self._multivariate is not None else None)
        self.rows += n
        if n >= FOLD_ROWS:
            self._fold()
            for a in range(0, n, FOLD_ROWS):
                self._apply(batch.rows(a, a + FOLD_ROWS))
            return
        self._pending.add(batch.copy(), n)
        if self._pending.rows >= FOLD_ROWS:
            self._fold()

    def _fold(self) -> None:
        """Apply the buffered batches to the sketches."""
        if self._pending.batches:
            self._apply(self._pending.take())

    def _apply(self, b: "_Batch") -> None:
        if self._numeric:
            if self._bins is None:
                self._bins = BinIndex([s.edges for s in self._numeric.values()])
            _update_numeric_block(list(self._numeric.values()), self._bins, b.numeric)
        if self._categorical:
            _update_categorical_block(list(self._categorical.values()), b.codes)
        self._predictions.update(b.class_codes, None, b.values, confidence=b.confidence)
        if b.mv_errors is not None:
            self._multivariate.update(b.mv_errors)

    def merge(self, other: "Profile") -> "Profile":
        return Profile(
            numeric={k: s.merge(other.numeric[k]) for k, s in self.numeric.items()},
            categorical={k: s.merge(other.categorical[k]) for k, s in self.categorical.items()},
            predictions=self.predictions.merge(other.predictions),
            rows=self.rows + other.rows,
            multivariate=None if self.multivariate is None else self.multivariate.merge(other.multivariate),
            detector=self.detector if self.detector is not None else other.detector,
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


@dataclass
class _Batch:
    """The arrays of one update that the sketches take (None where a sketch takes nothing):
    the prediction's confidence is kept instead of the probabilities."""

    numeric: np.ndarray
    codes: np.ndarray
    class_codes: np.ndarray | None
    confidence: np.ndarray | None
    values: np.ndarray | None
    mv_errors: np.ndarray | None

    def arrays(self) -> tuple[np.ndarray | None, ...]:
        return self.numeric, self.codes, self.class_codes, self.confidence, self.values, self.mv_errors

    def _map(self, fn) -> "_Batch":
        return _Batch(*(None if a is None else fn(a) for a in self.arrays()))

    def copy(self) -> "_Batch":
        return self._map(np.array)

    def rows(self, a: int, b: int) -> "_Batch":
        return self._map(lambda x: x[a:b])


class _Pending:
    """Batches added since the last fold."""

    def __init__(self):
        self.batches: list[_Batch] = []
        self.rows = 0

    def add(self, batch: _Batch, rows: int) -> None:
        self.batches.append(batch)
        self.rows += rows

    def take(self) -> _Batch:
        """All pending rows as one batch, and an empty buffer. Each array joins the batches
        that had it: the sketches take each one independently."""
        batches, self.batches, self.rows = self.batches, [], 0
        if len(batches) == 1:
            return batches[0]
        return _Batch(*(_join(column) for column in zip(*(b.arrays() for b in batches))))


def _join(arrays) -> np.ndarray | None:
    arrays = [a for a in arrays if a is not None]
    return np.concatenate(arrays) if arrays else None


def _update_numeric_block(sketches: list[NumericSketch], bins: BinIndex, X: np.ndarray) -> None:
    """Update every numeric sketch from one ``(rows, features)`` matrix: one pass over it
    for missing values, moments and ranges, and one ``bincount`` for every histogram."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] == 0:
        return
    Xt = np.ascontiguousarray(X.T)  # one feature per row: the reductions run along memory
    nan = np.isnan(Xt)
    any_nan = bool(nan.any())
    rows = Xt.shape[1]
    if any_nan:
        n_b = rows - nan.sum(axis=1)
        filled = np.where(nan, 0.0, Xt)
    else:
        n_b = np.full(Xt.shape[0], rows)
        filled = Xt
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # extreme values: moments go inf
        mean_b = filled.sum(axis=1) / np.maximum(n_b, 1)
        dev = filled - mean_b[:, None]
        if any_nan:
            dev[nan] = 0.0
        m2_b = np.einsum("ij,ij->i", dev, dev)
    if any_nan:
        lo = np.where(nan, np.inf, Xt).min(axis=1)
        hi = np.where(nan, -np.inf, Xt).max(axis=1)
    else:
        lo, hi = Xt.min(axis=1), Xt.max(axis=1)
    idx = bins.index(filled)
    counts = np.bincount(idx[~nan] if any_nan else idx.ravel(), minlength=len(sketches) * bins.width)
    counts = counts.reshape(len(sketches), bins.width)
    for j, s in enumerate(sketches):
        nb = int(n_b[j])
        s.missing += rows - nb
        if nb:
            s.counts += counts[j, : s.counts.size]
            s.add_moments(nb, float(mean_b[j]), float(m2_b[j]))
            s.minimum = min(s.minimum, float(lo[j]))
            s.maximum = max(s.maximum, float(hi[j]))


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


def singletons(profile: "Profile") -> dict[str, tuple[int, int, int]]:
    """Per categorical feature: (categories seen once, seen twice, values in the unseen
    bucket), what the unseen-category test's Good-Turing estimate reads (monitoring.stats.rates)."""
    return {name: (int((sk.counts == 1).sum()), int((sk.counts == 2).sum()), int(sk.unseen))
            for name, sk in profile.categorical.items()}
