"""Model performance from labelled rows, computed with :mod:`sklearn.metrics`."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], proba: np.ndarray | None,
                           classes: Sequence[Any], per_class: bool = False) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, and ROC AUC and log loss when probabilities exist.

    Metrics that are undefined for the data (e.g. AUC with a single class present) are
    left out rather than reported as a misleading number.
    """
    from sklearn import metrics as skm

    labels = list(classes)
    k = len(labels)
    idx = {c: i for i, c in enumerate(labels)}
    # Work on class indices: labels may be strings, ints or a mix that sklearn can't type.
    if labels == list(range(k)):  # already class indices (the per-window path): vectorised
        y_idx = np.asarray(y_true, dtype=np.int64)
        p_idx = np.asarray(y_pred, dtype=np.int64)
        y_idx = np.where((y_idx >= 0) & (y_idx < k), y_idx, k)
        p_idx = np.where((p_idx >= 0) & (p_idx < k), p_idx, k)
    else:
        y_idx = np.fromiter((idx.get(v, k) for v in y_true), dtype=np.int64)
        p_idx = np.fromiter((idx.get(v, k) for v in y_pred), dtype=np.int64)
    out: dict[str, float] = {"accuracy": float(skm.accuracy_score(y_idx, p_idx))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = skm.precision_recall_fscore_support(y_idx, p_idx, labels=list(range(k)), average="macro",
                                                         zero_division=0)
    out.update(precision=float(p), recall=float(r), f1=float(f))
    if per_class:
        pc, rc, fc, sup = skm.precision_recall_fscore_support(y_idx, p_idx, labels=list(range(k)), zero_division=0)
        out["per_class"] = {str(labels[i]): {"precision": float(pc[i]), "recall": float(rc[i]), "f1": float(fc[i]),
                                             "support": int(sup[i])} for i in range(k)}
    if proba is not None and len(np.unique(y_idx)) > 1 and (y_idx < k).all():
        if k == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_idx, proba[:, 1]))
        elif len(np.unique(y_idx)) == k:
            out["roc_auc"] = float(skm.roc_auc_score(y_idx, proba, multi_class="ovr", labels=list(range(k))))
        out["log_loss"] = float(skm.log_loss(y_idx, proba, labels=list(range(k))))
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MSE, RMSE, MAE, R2 and MAPE."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    mse = float(skm.mean_squared_error(y_true, y_pred))
    out = {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(skm.mean_absolute_error(y_true, y_pred))}
    if len(y_true) > 1:
        out["r2"] = float(skm.r2_score(y_true, y_pred))
    out["mape"] = float(skm.mean_absolute_percentage_error(y_true, y_pred))
    return out


# -- per-window performance: realized, band, estimate ----------------------------------------

import math  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from monitoring.stats.drift import size_grid  # noqa: E402
from monitoring.names import HIGHER_IS_BETTER, PERFORMANCE_METRICS  # noqa: E402
from monitoring.values import json_ready  # noqa: E402



#: Default effect floor of the performance band: a change smaller than this is never
#: flagged, however many labels a window has. In the metric's own units for metrics on
#: [0, 1] (accuracy, precision, recall, f1, roc_auc: 0.02 is two points); for unbounded
#: metrics (log_loss, mse, rmse, mae, mape, r2) as a share of the baseline's magnitude (2 %).
PERFORMANCE_EFFECT_FLOOR = 0.02


def default_effect_floor(metric: str, baseline: float) -> float:
    """The default effect floor of ``metric`` at ``baseline`` (see PERFORMANCE_EFFECT_FLOOR)."""
    m = PERFORMANCE_METRICS[metric]
    if m.lower == 0.0 and m.upper == 1.0:
        return PERFORMANCE_EFFECT_FLOOR
    return PERFORMANCE_EFFECT_FLOOR * abs(baseline)


@dataclass(frozen=True)
class PerformanceConfig:
    """``band_sigmas``: the band's half-width in standard errors of the difference between a
    window's metric and the baseline (both sampled); ``effect_floors``: per-metric floors
    in the metric's units, replacing :func:`default_effect_floor`; ``floors``: absolute
    floors (or ceilings, for error metrics) the metric must never cross."""

    min_labels: int = 30
    min_per_class: int = 5
    band_sigmas: float = 3.0
    bootstrap: int = 200
    coverage_target: float = 0.95
    max_label_delay: float = 7 * 24 * 3600.0
    floors: dict[str, float] = field(default_factory=dict)
    effect_floors: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_labels < 1 or self.bootstrap < 20 or self.band_sigmas <= 0:
            raise ValueError("min_labels >= 1, bootstrap >= 20 and band_sigmas > 0 are required")
        for k, v in [*self.floors.items(), *self.effect_floors.items()]:
            if k not in HIGHER_IS_BETTER:
                raise ValueError(f"floor for unknown metric {k!r}; known: {', '.join(HIGHER_IS_BETTER)}")
        if any(v < 0 for v in self.effect_floors.values()):
            raise ValueError("effect floors must be >= 0")


def _metrics(task: str, y_true, y_pred, proba, k: int) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(list(y_true), list(y_pred), proba, list(range(k)))
    return regression_metrics(y_true, y_pred)


class Baseline:
    """The validation set as the yardstick: baseline metrics and bootstrap bands at any size.

    The band at ``n`` labels is ``baseline +- max(floor, floor / 2 + k * sqrt(se_val^2 +
    se_n^2))``: ``se_n`` is the metric's bootstrap sd at ``n`` rows (a window's own sampling
    error), ``se_val`` the sd at the validation set's own size (the baseline is itself an
    estimate from a finite sample, and every window is compared with the same one), and
    ``floor`` the effect floor: a drop must be at least the floor and significantly more
    than half of it (as for rates, :func:`monitoring.stats.rates.beyond_floor`), so the band
    never shrinks to a point as windows grow and a drop below half the floor is flagged at
    most at the band's rate.

    Parameters
    ----------
    y_true, y_pred : arrays
        Class indices (classification) or values (regression) on the validation rows.
    proba : array, optional
        The model's probabilities on them.
    """

    def __init__(self, task: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int,
                 in_sample: bool, config: PerformanceConfig | None = None, seed: int = 0):
        self.task = task
        self.y_true = np.asarray(y_true)
        self.y_pred = np.asarray(y_pred)
        self.proba = proba
        self.k = n_classes
        self.in_sample = in_sample
        self.config = config or PerformanceConfig()
        self.values = _metrics(task, self.y_true, self.y_pred, proba, n_classes)
        self._seed = seed
        self._bands: dict[int, dict[str, float]] = {}
        self._lock = threading.Lock()

    def sd(self, n: int) -> dict[str, float]:
        """Bootstrap standard deviation of each metric at ``n`` labelled rows (cached on a log grid)."""
        g = size_grid(max(n, 2))
        with self._lock:
            hit = self._bands.get(g)
        if hit is not None:
            return hit
        rng = np.random.default_rng([self._seed, g])
        m = len(self.y_true)
        draws: dict[str, list[float]] = {}
        for _ in range(self.config.bootstrap):
            idx = rng.integers(0, m, size=g)
            vals = _metrics(self.task, self.y_true[idx], self.y_pred[idx],
                            None if self.proba is None else self.proba[idx], self.k)
            for key, v in vals.items():
                draws.setdefault(key, []).append(v)
        sd = {key: float(np.std(v, ddof=1)) for key, v in draws.items() if len(v) > 1}
        with self._lock:
            self._bands[g] = sd
        return sd

    def effect_floor(self, metric: str) -> float:
        floors = self.config.effect_floors
        return floors[metric] if metric in floors else default_effect_floor(metric, self.values[metric])

    def band(self, n: int) -> dict[str, tuple[float, float]]:
        sd, sd_val = self.sd(n), self.sd(len(self.y_true))
        s = self.config.band_sigmas
        out = {}
        for key, base in self.values.items():
            if key in sd:
                floor = self.effect_floor(key)
                half = max(floor, floor / 2 + s * math.hypot(sd[key], sd_val.get(key, 0.0)))
                lo, hi = base - half, base + half
                metric = PERFORMANCE_METRICS[key]
                if metric.lower is not None:
                    lo = max(lo, metric.lower)
                if metric.upper is not None:
                    hi = min(hi, metric.upper)
                floor = self.config.floors.get(key)
                if floor is not None:
                    lo, hi = (max(lo, floor), hi) if HIGHER_IS_BETTER[key] else (lo, min(hi, floor))
                out[key] = (lo, hi)
        return out


class Cbpe:
    """Confidence-based performance estimation for classifiers with probabilities.

    A calibrator per class (one-vs-rest; isotonic regression cross-fitted on the
    validation labels, i.e. the average of one fit per leave-one-fold-out split, or Platt
    scaling below ``isotonic_min`` rows, where isotonic steps overfit) maps the model's
    probabilities to calibrated ones; a window's metrics are then estimated as their
    expectation under labels drawn from the calibrated probabilities (with the model's
    real decisions), and the spread of those draws is the standard error.

    It assumes P(y | x) is unchanged: it sees covariate shift, never concept shift (when
    the labels themselves change meaning, the estimate stays flat while reality drops).
    """

    def __init__(self, y_true: np.ndarray, proba: np.ndarray, isotonic_min: int = 1000, draws: int = 200,
                 seed: int = 0):
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y_true, dtype=int)
        self.folds = 5
        self.k = proba.shape[1]
        self.draws = draws
        self.seed = seed
        self.method = "isotonic" if len(y) >= isotonic_min else "platt"
        self._cal = []
        for c in range(self.k):
            target = (y == c).astype(int)
            s = proba[:, c]
            if target.min() == target.max():
                self._cal.append(("const", float(target[0])))
            elif self.method == "isotonic":
                # cross-fitted: one isotonic fit per leave-one-fold-out split, averaged, so the
                # calibration map is not the step function of a single fit to these labels
                folds = np.random.default_rng(seed).permutation(len(s)) % self.folds
                fits = [IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s[folds != f], target[folds != f])
                        for f in range(self.folds)]
                self._cal.append(("iso", fits))
            else:
                self._cal.append(("platt", LogisticRegression().fit(_logit(s)[:, None], target)))

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        cols = []
        for c, (kind, cal) in enumerate(self._cal):
            s = proba[:, c]
            if kind == "const":
                cols.append(np.full(len(s), cal))
            elif kind == "iso":
                cols.append(np.mean([f.predict(s) for f in cal], axis=0))
            else:
                cols.append(cal.predict_proba(_logit(s)[:, None])[:, 1])
        q = np.clip(np.column_stack(cols), 1e-9, None)
        return q / q.sum(axis=1, keepdims=True)

    def estimate(self, y_pred: np.ndarray, proba: np.ndarray) -> dict[str, tuple[float, float]]:
        """{metric: (estimate, standard error)} for accuracy, precision, recall, f1, roc_auc
        (macro over classes; one-vs-rest AUC), from label sets drawn from the calibrated
        probabilities. Vectorised over the draws."""
        from scipy.stats import rankdata

        q = self.calibrate(proba)
        n, k = len(y_pred), self.k
        y_pred = np.asarray(y_pred, dtype=int)
        rng = np.random.default_rng([self.seed, n])
        draws = max(20, min(self.draws, int(4e6 // max(n * k, 1))))
        Y = np.minimum((rng.random((draws, n, 1)) > q.cumsum(axis=1)[None]).sum(axis=2), k - 1)  # (B, n)
        out: dict[str, np.ndarray] = {"accuracy": (Y == y_pred[None]).mean(axis=1)}
        prec, rec, f1, auc = [], [], [], []
        for c in range(k):
            pos = Y == c                      # (B, n) true class c
            predc = (y_pred == c)[None]        # (1, n)
            tp = (pos & predc).sum(axis=1).astype(float)
            fp = predc.sum() - tp
            fn = pos.sum(axis=1) - tp
            with np.errstate(divide="ignore", invalid="ignore"):
                p_ = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
                r_ = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
                f_ = np.where(p_ + r_ > 0, 2 * p_ * r_ / (p_ + r_), 0.0)
            prec.append(p_)
            rec.append(r_)
            f1.append(f_)
            ranks = rankdata(proba[:, c])     # AUC = (rank sum of positives - n1(n1+1)/2) / (n1 n0)
            n1 = pos.sum(axis=1).astype(float)
            n0 = n - n1
            with np.errstate(divide="ignore", invalid="ignore"):
                auc.append(np.where((n1 > 0) & (n0 > 0), (pos @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0), np.nan))
        out["precision"] = np.mean(prec, axis=0)
        out["recall"] = np.mean(rec, axis=0)
        out["f1"] = np.mean(f1, axis=0)
        out["roc_auc"] = auc[1] if k == 2 else np.mean(auc, axis=0)
        res = {}
        for key, v in out.items():
            v = v[np.isfinite(v)]
            if v.size > 1:
                res[key] = (float(v.mean()), float(v.std(ddof=1)))
        return res


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def window_performance(task: str, window_id: int, data: dict, baseline: Baseline | None, cbpe: Cbpe | None,
                       config: PerformanceConfig, n_classes: int, now: float, window_end: float | None,
                       class_names: Sequence[Any] | None = None) -> dict:
    """Everything ``GET /monitoring/performance`` shows for one window (JSON-ready)."""
    n = int(data["n"])
    lab = data["labelled"]
    labelled = int(lab.sum())
    out: dict = {"window_id": window_id, "predictions": n, "labelled": labelled,
                 "coverage": labelled / n if n else 0.0}
    delays = (data["observed_at"][lab] - data["predicted_at"][lab]) if labelled else np.zeros(0)
    out["label_delay_seconds"] = ({"p50": float(np.median(delays)), "p90": float(np.quantile(delays, 0.9)),
                                   "max": float(delays.max())} if labelled else None)
    ended = window_end if window_end is not None else (float(np.nanmax(data["predicted_at"])) if n else now)
    out["final"] = bool(out["coverage"] >= config.coverage_target or now - ended >= config.max_label_delay)
    proba = None
    if task == "classification" and n and all(p is not None for p in data["proba"]):
        proba = np.frombuffer(b"".join(data["proba"]), dtype=np.float32).reshape(n, -1).astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)  # stored as float32: renormalise the rounding away
    # estimate (no labels needed)
    if cbpe is not None and proba is not None and n:
        est = cbpe.estimate(data["pred_code"].astype(int), proba)
        out["estimated"] = {k: {"value": v, "se": se} for k, (v, se) in est.items()}
    # realized
    status = "ok"
    if task == "classification":
        y_true, y_pred = data["true_code"][lab].astype(int), data["pred_code"][lab].astype(int)
        per_class = np.bincount(y_true, minlength=n_classes) if labelled else np.zeros(n_classes, int)
        present = per_class[per_class > 0]
        if labelled < config.min_labels or (present.size and present.min() < config.min_per_class) \
                or present.size < min(2, n_classes):
            status = "insufficient labels"
    else:
        y_true, y_pred = data["true_value"][lab], data["pred_value"][lab]
        if labelled < config.min_labels:
            status = "insufficient labels"
    if labelled:
        p = None if proba is None else proba[lab]
        if task == "classification":
            realized = classification_metrics(y_true, y_pred, p, list(range(n_classes)), per_class=True)
            per = realized.pop("per_class")
            names = list(class_names) if class_names is not None else list(range(n_classes))
            out["per_class"] = {str(names[int(i)]): v for i, v in per.items()}
        else:
            realized = regression_metrics(y_true, y_pred)
        out["realized"] = realized
    else:
        realized = {}
        out["realized"] = None
    if baseline is not None and labelled >= 2:
        band = baseline.band(labelled)
        out["baseline"] = baseline.values
        out["band"] = {k: list(v) for k, v in band.items()}
        if status == "ok":
            outside = {}
            for k, (lo, hi) in band.items():
                if k in realized:
                    v = realized[k]
                    outside[k] = "below" if v < lo else "above" if v > hi else "within"
            out["band_status"] = outside
            worse = [k for k, s in outside.items() if (s == "below") == HIGHER_IS_BETTER[k] and s != "within"]
            out["degraded"] = worse
    if baseline is not None and baseline.in_sample:
        status = "in-sample baseline" if status == "ok" else status
    out["status"] = status
    out["alerting"] = bool(status == "ok" and baseline is not None and not baseline.in_sample)
    out["computed_at"] = now
    return json_ready(out)
