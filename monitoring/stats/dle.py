"""Direct loss estimation (DLE): a regressor's MAE, MSE and RMSE per window, without labels.

The regression counterpart of :class:`~monitoring.stats.performance.Cbpe`, in the same
place of the data flow: fitted once on the validation rows (data the monitored model never
saw), then asked for an estimate of every scored window from what serving logged.

Fitting. Two *loss models* learn the conditional mean of the absolute error ``|y - ŷ|``
and of the squared error ``(y - ŷ)²`` from the features and the prediction: histogram
gradient boosting with a Poisson loss (a log link keeps the predicted loss positive, and
the Poisson deviance is minimised by the conditional mean, which is what a window's mean
loss needs). They are cross-fitted: one model per fold fitted without that fold; the
served estimator averages them, and the out-of-fold predictions measure honestly how far
a row's loss strays from its prediction. A second pair sees only the prediction: it serves
when a window's feature values were not logged (``log_sample_rate`` 0, or privacy rules
that hash or drop a feature: a hashed number is not a number): the mean loss per quantile bin of
the prediction, cross-fitted the same way.

Estimating. Over a window of ``n`` predictions, the MAE estimate is the mean of
``ĝ_abs`` over the rows whose features were logged (all ``n`` for the prediction-only
pair), the MSE the mean of ``ĝ_sq``, the RMSE its square root. The standard error says how
far the window's realized metric is expected to fall from the estimate if P(y | x) is
unchanged: each row's loss varies around its prediction with variance ``κ·ĝ(x)²`` (a
location-scale assumption: large and small errors have the same shape), ``κ`` measured on
the out-of-fold validation residuals; plus, when only a sample of the rows had features
logged, the sampling error of the mean over that sample. RMSE's by the delta method.

Blind spot (the same as CBPE's, measured in ``tests/monitoring/stats/test_dle.py``): the
loss models learned where the model errs *given the inputs*. Covariate shift (inputs
moving to where the model errs more or less) is seen; concept shift (the same inputs now
mean other targets) is not: the estimate stays flat while the realized error grows.

Invariants: fitting is seeded and bounded (at most :data:`MAX_ROWS` validation rows,
``folds`` x 4 boosting fits); estimating never raises on odd logged values (an unparsable
or unknown value is missing, which the boosting models handle).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitoring.names import DLE_METRICS

#: Validation rows the loss models are fitted on at most (a uniform seeded subsample).
MAX_ROWS = 20_000
#: Categories kept per categorical feature (by validation frequency); others are missing.
MAX_CATEGORIES = 250
#: Fewest rows with logged features for the feature models to serve; below, prediction only.
MIN_LOGGED_ROWS = 30
METRICS = DLE_METRICS


@dataclass(frozen=True)
class DleEstimate:
    """One window's estimate: ``values`` {metric: (estimate, standard error)}; ``inputs``
    ``"features"`` or ``"prediction"`` (which loss models served); ``rows``: the rows they saw."""

    values: Mapping[str, tuple[float, float]]
    inputs: str
    rows: int


class _LossModel:
    """A cross-fitted pair of loss models (absolute, squared) on one set of inputs:
    boosting on the features and the prediction, or (``categorical`` None) the mean loss
    per quantile bin of the prediction alone."""

    def __init__(self, X: np.ndarray, abs_err: np.ndarray, categorical: np.ndarray | None, folds: int, seed: int):
        self.fits: dict[str, list] = {}
        self.kappa: dict[str, float] = {}
        assign = np.random.default_rng(seed).permutation(len(X)) % folds
        with _one_thread():
            for kind, target in (("abs", abs_err), ("sq", abs_err ** 2)):
                models, oof = [], np.zeros(len(X))
                for f in range(folds):
                    train = assign != f
                    models.append(_fit(X[train], target[train], categorical, seed) if categorical is not None
                                  else _Binned(X[train, 0], target[train]))
                    oof[~train] = models[-1].predict(X[~train])
                self.fits[kind] = models
                # the spread of a row's loss around its (honest, out-of-fold) prediction, relative to it
                denom = float(np.mean(oof ** 2))
                self.kappa[kind] = float(np.mean((target - oof) ** 2) / denom) if denom > 0 else 0.0

    def predict(self, X: np.ndarray, kind: str) -> tuple[np.ndarray, float]:
        """(the fold models' mean prediction per row, the delete-a-fold jackknife variance
        of its mean over the rows: how unsure the loss models are about these inputs)."""
        with _one_thread():
            per_fold = np.array([np.clip(m.predict(X), 0.0, None) for m in self.fits[kind]])
        means = per_fold.mean(axis=1)
        k = len(means)
        return per_fold.mean(axis=0), float((k - 1) / k * ((means - means.mean()) ** 2).sum())


def _fit(X: np.ndarray, target: np.ndarray, categorical: np.ndarray, seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    if target.sum() <= 0:  # a perfect model: nothing to learn, the loss is 0
        return _Constant(0.0)
    return HistGradientBoostingRegressor(
        loss="poisson", max_iter=50, learning_rate=0.15, max_leaf_nodes=8, min_samples_leaf=40,
        l2_regularization=1.0, early_stopping=False, random_state=seed,
        categorical_features=categorical if categorical.any() else None).fit(X, target)


def _one_thread():
    """Boosting on one OpenMP thread: its default (every core) competes with the serving
    workers on the same machine, and oversubscribed cores made a fit ten times slower.
    threadpoolctl limits only the libraries already loaded: scikit-learn's OpenMP first."""
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


class _Binned:
    """Mean loss per quantile bin of the prediction (at most 20 bins of at least 50 rows)."""

    def __init__(self, pred: np.ndarray, target: np.ndarray):
        bins = int(max(1, min(20, len(pred) // 50)))
        self.edges = np.unique(np.quantile(pred, np.linspace(0, 1, bins + 1)[1:-1]))
        idx = np.searchsorted(self.edges, pred)
        sums = np.bincount(idx, weights=target, minlength=len(self.edges) + 1)
        counts = np.bincount(idx, minlength=len(self.edges) + 1)
        self.means = np.where(counts > 0, sums / np.maximum(counts, 1), target.mean())

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.means[np.searchsorted(self.edges, X[:, 0])]


class _Constant:
    def __init__(self, value: float):
        self.value = value

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.value)


class Dle:
    """Direct loss estimation for a regressor, fitted on its validation rows.

    Parameters
    ----------
    features : mapping of name to 1-D array
        The validation rows' feature values; numeric ones as floats (NaN missing).
    y_true, y_pred : arrays
        The validation targets and the model's predictions on them.
    categorical : sequence of str
        Which of ``features`` are categorical (any values; compared as text).
    folds : int
        Cross-fitting folds (>= 2).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=2000); y = x + rng.normal(size=2000) * (1 + (x > 0))
    >>> dle = Dle({"x": x}, y, x, folds=2)
    >>> est = dle.estimate(x[:500], (x[:500], [{"x": v} for v in x[:500]]))
    >>> est.inputs, round(est.values["mae"][0], 1)
    ('features', 1.2)
    """

    def __init__(self, features: Mapping[str, np.ndarray], y_true: np.ndarray, y_pred: np.ndarray, *,
                 categorical: Sequence[str] = (), folds: int = 3, max_rows: int = MAX_ROWS, seed: int = 0):
        if folds < 2:
            raise ValueError(f"folds must be >= 2; got {folds}")
        y_true = np.asarray(y_true, dtype=np.float64)
        y_pred = np.asarray(y_pred, dtype=np.float64)
        keep = np.isfinite(y_true) & np.isfinite(y_pred)
        idx = np.flatnonzero(keep)
        if len(idx) > max_rows:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_rows, replace=False))
        if len(idx) < 10 * folds:
            raise ValueError(f"DLE needs at least {10 * folds} validation rows with finite targets; got {len(idx)}")
        self.names = list(features)
        cat = set(categorical)
        self.categories: dict[str, dict[str, int]] = {}
        for name in self.names:
            if name in cat:
                vals, counts = np.unique(np.array([_text(v) for v in np.asarray(features[name], dtype=object)[idx]],
                                                  dtype=object).astype(str), return_counts=True)
                top = [v for v, c in sorted(zip(vals, counts), key=lambda t: -t[1]) if v != _MISSING][:MAX_CATEGORIES]
                self.categories[name] = {v: i for i, v in enumerate(top)}
        self.rows = len(idx)
        abs_err = np.abs(y_true[idx] - y_pred[idx])
        X = self._matrix([np.asarray(features[n], dtype=object)[idx] for n in self.names], y_pred[idx])
        is_cat = np.array([n in self.categories for n in self.names] + [False])
        self.full = _LossModel(X, abs_err, is_cat, folds, seed)
        self.pred_only = _LossModel(y_pred[idx][:, None], abs_err, None, folds, seed)
        self.baseline = {"mae": float(abs_err.mean()), "mse": float((abs_err ** 2).mean())}

    # -- inputs --------------------------------------------------------------------------------
    def _matrix(self, columns: Sequence[np.ndarray], y_pred: np.ndarray) -> np.ndarray:
        out = np.empty((len(y_pred), len(self.names) + 1))
        for j, (name, col) in enumerate(zip(self.names, columns)):
            codes = self.categories.get(name)
            if codes is None:
                try:  # floats and None (missing): one conversion
                    out[:, j] = np.asarray(col, dtype=np.float64)
                except (TypeError, ValueError):  # a hashed or otherwise non-numeric value somewhere
                    out[:, j] = [_number(v) for v in col]
            else:
                out[:, j] = [codes.get(_text(v), np.nan) for v in col]
        out[:, -1] = y_pred
        return out

    def logged_matrix(self, rows: Sequence[Mapping[str, Any]], y_pred: np.ndarray) -> np.ndarray:
        """Logged feature dicts (as the prediction log keeps them) as the loss models' input;
        absent or unparsable values are missing."""
        cols = [np.array([r.get(n) for r in rows], dtype=object) for n in self.names]
        return self._matrix(cols, np.asarray(y_pred, dtype=np.float64))

    # -- estimating ------------------------------------------------------------------------------
    def estimate(self, y_pred: np.ndarray, logged: tuple[np.ndarray, Sequence[Mapping[str, Any]]] | None = None
                 ) -> DleEstimate:
        """The window's MAE, MSE and RMSE with standard errors.

        ``y_pred``: every prediction of the window; ``logged``: (predictions, feature dicts)
        of the rows whose features were logged (a subset), or None. The feature models serve
        when at least :data:`MIN_LOGGED_ROWS` rows were logged, the prediction-only ones otherwise."""
        y_pred = np.asarray(y_pred, dtype=np.float64)
        y_pred = y_pred[np.isfinite(y_pred)]
        n = len(y_pred)
        if logged is not None and len(logged[1]) >= MIN_LOGGED_ROWS:
            model, X, inputs = self.full, self.logged_matrix(logged[1], logged[0]), "features"
        else:
            model, X, inputs = self.pred_only, y_pred[:, None], "prediction"
        m = len(X)
        if n == 0 or m == 0:
            return DleEstimate({}, inputs, 0)
        n = max(n, m)
        g_abs, var_abs = model.predict(X, "abs")
        g_sq, var_sq = model.predict(X, "sq")
        # a row's loss around its prediction: Var(|e| | x) = E[e² | x] - E[|e| | x]² exactly
        # (floored at the location-scale share, should the two models disagree); Var(e² | x) by
        # the location-scale assumption
        spread = {"mae": np.maximum(g_sq - g_abs ** 2, model.kappa["abs"] * g_abs ** 2 / 4),
                  "mse": model.kappa["sq"] * g_sq ** 2}
        values: dict[str, tuple[float, float]] = {}
        for metric, g, var_model in (("mae", g_abs, var_abs), ("mse", g_sq, var_sq)):
            # the realized metric's noise over n rows, and the loss models' own: the validation
            # rows are a sample too (at least their mean's noise; more where the fold models disagree)
            var = float(np.mean(spread[metric])) * (1 / n + 1 / self.rows) + var_model
            if m < n and m > 1:  # only a sample of the window: the mean over it is itself uncertain
                var += float(np.var(g, ddof=1)) / m * (1 - m / n)
            values[metric] = (float(g.mean()), math.sqrt(var))
        mse, se = values["mse"]
        rmse = math.sqrt(mse)
        values["rmse"] = (rmse, se / (2 * rmse) if rmse > 0 else 0.0)
        return DleEstimate(values, inputs, m)


_MISSING = "\x00missing"


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return _MISSING
    return str(v.item() if hasattr(v, "item") else v)


def _number(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):  # a hashed or otherwise non-numeric logged value: missing
        return math.nan


def parse_logged(values: Sequence[float | None], features: Sequence[str | None]) -> tuple[np.ndarray, list[dict]]:
    """The prediction log's (prediction, features JSON) rows as (predictions, feature dicts),
    skipping rows without features or with unreadable JSON."""
    preds, rows = [], []
    for v, text in zip(values, features):
        if text is None or v is None:
            continue
        try:
            d = json.loads(text)
        except ValueError:
            continue
        if isinstance(d, dict):
            preds.append(float(v))
            rows.append(d)
    return np.asarray(preds, dtype=np.float64), rows


def window_fields(dle: Dle, data: Mapping[str, Any]) -> dict[str, Any]:
    """What a scored regression window gains (JSON-ready): ``estimated`` {metric: {value,
    se}}, as CBPE gives classifiers, and ``estimated_by`` (method, inputs, rows)."""
    logged = data.get("logged")
    est = dle.estimate(data["pred_value"], parse_logged(*logged) if logged is not None else None)
    if not est.values:
        return {}
    return {"estimated": {k: {"value": v, "se": se} for k, (v, se) in est.values.items()},
            "estimated_by": {"method": "dle", "inputs": est.inputs, "rows": est.rows}}
