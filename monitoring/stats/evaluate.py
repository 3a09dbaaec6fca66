"""Judging a window against the reference: per-feature drift with Holm's correction and
an effect floor, multivariate drift, data quality, and the prediction distribution.

Results are frozen dataclasses. Features the schema exempts from drift (ids, dates:
``FeatureSpec.drift_exempt``) get no drift test and no out-of-range or unseen rate, only
their missing rate. A feature is flagged when its Holm-adjusted p-value is at
most ``alpha`` AND its effect is at least ``effect_floor``, so that a huge window does not
flag a negligible shift. The effects are on one scale (see docs/drift.md): for numeric
features the tail-capped Wasserstein distance in robust sds (IQR / 1.349), for
categorical ones the largest Cohen's h over the known categories (the share change in
sds of its sampling noise). The exported *score* is ``min(effect / floor, alpha / p_holm)``: >= 1
exactly when flagged, so alert rules never mix p-values and distances.

Holm's correction runs over the features only: the multivariate check is its own rule and
is tested at ``alpha`` with the same effect floor. The prediction test has the same
floor too (Cohen's h on the class mix, the numeric effect on regression outputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from monitoring.stats import drift as D
from monitoring.stats.profile import Profile, out_of_range
from monitoring.schema import ModelSchema
from monitoring.values import json_ready

#: Evidently's rule: p-value tests on small references, distances on large ones.
SMALL_REFERENCE = 1000
MAX_SCORE = 1e6


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.01
    effect_floor: float = 0.1
    min_rows: int = 30
    methods: Mapping[str, str] = field(default_factory=dict)  # per-feature override

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {self.alpha}")
        if self.effect_floor < 0:
            raise ValueError(f"effect_floor must be >= 0; got {self.effect_floor}")
        for name, method in self.methods.items():
            if method not in D.METHODS:
                raise ValueError(f"method for {name!r} must be one of {D.METHODS}; got {method!r}")


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    method: str
    statistic: float
    p_value: float
    p_holm: float
    effect: float
    score: float
    flagged: bool


@dataclass(frozen=True)
class FeatureQuality:
    feature: str
    missing_rate: float
    reference_missing_rate: float
    out_of_range_rate: float | None = None
    unseen_rate: float | None = None


@dataclass(frozen=True)
class PredictionDrift:
    method: str
    statistic: float
    p_value: float
    flagged: bool  # p_value <= alpha and effect >= effect_floor
    class_share: dict[str, float] | None = None
    reference_class_share: dict[str, float] | None = None
    mean_confidence: float | None = None
    reference_mean_confidence: float | None = None
    entropy: float | None = None
    mean: float | None = None
    reference_mean: float | None = None
    variance: float | None = None
    reference_variance: float | None = None
    effect: float | None = None


@dataclass(frozen=True)
class WindowReport:
    window_id: int
    rows: int
    reference_rows: int
    too_small: bool
    features: tuple[FeatureDrift, ...]
    share_drifted: float
    multivariate: FeatureDrift | None
    quality: tuple[FeatureQuality, ...]
    predictions: PredictionDrift | None
    rejected: dict[str, int]
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.flagged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite numbers become None."""
        d = json_ready(self)
        d["drifted"] = list(self.drifted)
        return d


def default_method(kind: str, reference_rows: int, distinct: int) -> str:
    if reference_rows <= SMALL_REFERENCE:
        return "ks" if kind == "numeric" and distinct > 5 else "chisquare"
    return "wasserstein" if kind == "numeric" and distinct > 5 else "jensenshannon"


def _share(counts: np.ndarray, labels: Sequence[Any]) -> dict[str, float]:
    total = counts.sum()
    return {str(c): (float(v) / total if total else 0.0) for c, v in zip(labels, counts)}


def _score(effect: float, floor: float, p_holm: float, alpha: float) -> float:
    e = effect / floor if floor > 0 else MAX_SCORE
    p = alpha / p_holm if p_holm > 0 else MAX_SCORE
    return float(min(e, p, MAX_SCORE))


def _scale(ref) -> float:
    """A numeric reference's robust sd (IQR / 1.349), else its sd, else 1."""
    scale = D.robust_scale(ref.edges, ref.counts)
    if math.isfinite(scale) and scale > 0:
        return scale
    return math.sqrt(ref.variance) if ref.n > 1 and ref.variance > 0 else 1.0


class WindowEvaluator:
    """Evaluate window profiles against one reference profile. Stateless apart from the
    bootstrap null cache (reading a result never changes anything)."""

    def __init__(self, schema: ModelSchema, reference: Profile, config: DriftConfig | None = None,
                 nulls: D.NullCache | None = None):
        self.schema = schema
        self.reference = reference
        self.config = config or DriftConfig()
        self.nulls = nulls or D.NullCache()
        ref_rows = reference.rows
        reference.predictions  # noqa: B018 (folds any buffered rows: from here on the reference is only read)
        self._methods: dict[str, str] = {}
        for f in schema.numeric:
            s = reference.numeric[f.name]
            distinct = int((s.counts > 0).sum())
            self._methods[f.name] = self.config.methods.get(f.name, default_method("numeric", ref_rows, distinct))
        for f in schema.categorical:
            self._methods[f.name] = self.config.methods.get(f.name, default_method("categorical", ref_rows, 0))

    @property
    def methods(self) -> dict[str, str]:
        return dict(self._methods)

    def prepare(self, rows: int) -> int:
        """Fill the bootstrap null cache for windows of ``rows`` rows, so that the first such
        window is judged as fast as later ones (the nulls cost about 9 ms per numeric feature
        at a 100k-row reference). Returns the number of null distributions added.

        It evaluates the reference's :meth:`~Profile.expected_window` of ``rows`` rows and
        discards the report, so every statistic looks its nulls up exactly as for a real
        window: the same keys, the same grid sizes (each feature's non-missing count at the
        reference's missing rate), the same choice between asymptotics and bootstrap. A
        real window whose counts fall on another grid step or the other side of that choice
        (a missing rate far from the reference's, say) fills what it lacks as before.
        Each null's tail (the extra draws a far-out observation needs, about 10x the base
        null's cost) is drawn too, on this thread only. Safe to call from a background thread
        while windows are evaluated: the cache is thread-safe and the reference is only read."""
        before = self.nulls.entries()
        with self.nulls.eager_tails():  # the tails too: a drifted first window would draw them
            self.evaluate(self.reference.expected_window(rows))
        return self.nulls.entries() - before

    def _numeric(self, name: str, win) -> tuple[D.DriftStat, float]:
        ref = self.reference.numeric[name]
        scale = _scale(ref)
        method = self._methods[name]
        stat = D.STATISTICS[method](ref.counts, win.counts, edges=ref.edges, scale=scale, key=("num", name),
                                    nulls=self.nulls)
        effect = stat.statistic if method == "wasserstein" else D.wasserstein_effect(
            ref.counts, win.counts, ref.edges, scale)
        return stat, float(effect)

    def _categorical(self, name: str, win) -> tuple[D.DriftStat, float]:
        """The mix of the known categories: test and effect over them alone.

        Values outside the known categories are left to the data-quality checks (the
        unseen share). As one more cell of this table they made sampling look like
        drift: the reference's unseen bucket is empty by construction while windows of
        the same population meet the categories it missed, and an estimate of that share
        from the reference (Good-Turing, its singletons / n) is too uncertain for the
        table: 50 Zipf categories on a 300-row reference rejected 13 % (empty bucket) or
        8.3 % (Good-Turing count) of null windows at a nominal 5 %, the known categories
        alone 4.1 % (``docs/drift.md``)."""
        ref = self.reference.categorical[name]
        rc, wc = ref.counts.astype(float), win.counts.astype(float)
        stat = D.STATISTICS[self._methods[name]](rc, wc, key=("cat", name), nulls=self.nulls)
        return stat, D.share_effect(rc, wc)

    def evaluate(self, window: Profile, window_id: int = 0, rejected: Mapping[str, int] | None = None,
                 started_at: float | None = None, ended_at: float | None = None) -> WindowReport:
        cfg = self.config
        rows = window.rows
        quality = self._quality(window)
        if rows < cfg.min_rows:
            return WindowReport(window_id, rows, self.reference.rows, True, (), 0.0, None, quality, None,
                                dict(rejected or {}), started_at, ended_at)
        raw: list[tuple[str, str, D.DriftStat, float]] = []
        for f in self.schema.numeric:
            if f.drift_exempt is None:  # an id or a date differs from the reference by construction
                stat, effect = self._numeric(f.name, window.numeric[f.name])
                raw.append((f.name, "numeric", stat, effect))
        for f in self.schema.categorical:
            if f.drift_exempt is None:
                stat, effect = self._categorical(f.name, window.categorical[f.name])
                raw.append((f.name, "categorical", stat, effect))
        p_holm = D.holm([r[2].p_value for r in raw])
        results = [self._judged(name, kind, stat, effect, float(ph)) for (name, kind, stat, effect), ph in zip(raw, p_holm)]
        mv = None
        det = self.reference.detector
        if det is not None and window.multivariate is not None:
            # its own rule: judged at alpha alone, not inside the features' Holm family
            effect, p = det.test(window.multivariate)
            mv = self._judged("__multivariate__", "multivariate", D.DriftStat("pca_reconstruction", effect, p),
                              effect, p)
        share = sum(r.flagged for r in results) / len(results) if results else 0.0
        return WindowReport(window_id, rows, self.reference.rows, False, tuple(results), share, mv, quality,
                            self._predictions(window), dict(rejected or {}), started_at, ended_at)

    def _judged(self, name: str, kind: str, stat: D.DriftStat, effect: float, p_adj: float) -> FeatureDrift:
        cfg = self.config
        flagged = bool(p_adj <= cfg.alpha and effect >= cfg.effect_floor)
        return FeatureDrift(name, kind, stat.method, stat.statistic, stat.p_value, p_adj, effect,
                            _score(effect, cfg.effect_floor, p_adj, cfg.alpha), flagged)

    def _quality(self, window: Profile) -> tuple[FeatureQuality, ...]:
        out = []
        for f in self.schema.numeric:
            w, r = window.numeric[f.name], self.reference.numeric[f.name]
            oor = out_of_range(w) / w.n if (w.n and f.minimum is not None and f.drift_exempt is None) else None
            out.append(FeatureQuality(f.name, w.missing_rate, r.missing_rate, oor, None))
        for f in self.schema.categorical:
            w, r = window.categorical[f.name], self.reference.categorical[f.name]
            total_w, total_r = w.n + w.missing, r.n + r.missing
            out.append(FeatureQuality(f.name, w.missing / total_w if total_w else 0.0,
                                      r.missing / total_r if total_r else 0.0, None,
                                      w.unseen / w.n if (w.n and f.drift_exempt is None) else None))
        return tuple(out)

    def _predictions(self, window: Profile) -> PredictionDrift | None:
        ref, win = self.reference.predictions, window.predictions
        alpha, floor = self.config.alpha, self.config.effect_floor
        if ref.classes is not None and win.classes is not None:
            labels = list(self.schema.classes)
            stat = D.chisquare(ref.classes.counts.astype(float), win.classes.counts.astype(float))
            effect = D.share_effect(ref.classes.counts, win.classes.counts)
            share = _share(win.classes.counts, labels)
            probs = np.array(list(share.values()))
            nz = probs[probs > 0]
            entropy = float(-(nz * np.log2(nz)).sum()) if nz.size else 0.0
            conf = win.confidence
            return PredictionDrift(stat.method, stat.statistic, stat.p_value,
                                   stat.p_value <= alpha and effect >= floor, class_share=share, reference_class_share=_share(ref.classes.counts, labels),
                                   mean_confidence=conf.mean if conf is not None and conf.n else None,
                                   reference_mean_confidence=ref.confidence.mean if ref.confidence is not None else None,
                                   entropy=entropy, effect=effect)
        if ref.values is not None and win.values is not None and win.values.n:
            stat = D.ks(ref.values.counts, win.values.counts)
            effect = D.wasserstein_effect(ref.values.counts, win.values.counts, ref.values.edges, _scale(ref.values))
            return PredictionDrift(stat.method, stat.statistic, stat.p_value, stat.p_value <= alpha and effect >= floor,
                                   mean=win.values.mean, reference_mean=ref.values.mean,
                                   variance=win.values.variance, reference_variance=ref.values.variance,
                                   effect=effect)
        return None
