"""Registration's insight into the model: which features it leans on (drift impact) and
where it errs (direct loss estimation, regressors).

Both are measured on the validation rows (:mod:`models.baseline`: data the model never saw,
with the model's own predictions) and stored beside the profile:

- ``importance.json``: permutation importance of every feature
  (:func:`sklearn.inspection.permutation_importance`: the drop in the model's score when one
  feature's values are shuffled among the rows, through the same adapter serving calls),
  seeded and bounded: at most :data:`IMPORTANCE_ROWS` rows, ``n_repeats`` from
  :data:`MAX_REPEATS` down to 1 so that at most :data:`MAX_PREDICTED_ROWS` rows are predicted
  in all and the model is called about :data:`MAX_CALLS` times at most (each call through
  the adapter has a fixed cost: ~7 ms for the demo classifier). Score: MAE for regressors; log loss for classifiers with probabilities, else
  accuracy. Read by :mod:`monitoring.stats.impact`.
- ``dle.joblib``: the :class:`~monitoring.stats.dle.Dle` loss models (regressors with an
  out-of-sample validation set only: in-sample residuals would promise errors the model
  never makes on new data).

Failure modes: neither may fail a registration. A model the measurement cannot use (a
single validation row, a constant target...) gets no file and a note saying why; a file
that cannot be read back at serving time (another scikit-learn, a damaged file) is logged
and the model is served without it. Models registered before these files existed have none.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from monitoring.schema import NUMERIC, ModelSchema
from monitoring.stats.dle import Dle

from .adapters import ModelAdapter
from .baseline import PREDICTION_COLUMN
from .frames import plain, predict_frame

log = logging.getLogger(__name__)

IMPORTANCE_FILE = "importance.json"
DLE_FILE = "dle.joblib"
#: Validation rows permutation importance is measured on at most (a seeded uniform subsample).
IMPORTANCE_ROWS = 2_000
MAX_REPEATS = 5
#: Rows predicted in all by permutation importance at most (features x repeats x rows).
MAX_PREDICTED_ROWS = 1_000_000
#: Model calls (features x repeats, plus one) aimed at; never fewer than one repeat.
MAX_CALLS = 100


@dataclass(frozen=True)
class Insight:
    """What registration measured: ``importance`` (the JSON stored), ``dle`` (or None),
    ``notes`` for the user, ``seconds`` each part took."""

    importance: dict[str, Any] | None
    dle: Dle | None
    notes: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        """Write the files into the stored model's directory."""
        if self.importance is not None:
            (directory / IMPORTANCE_FILE).write_text(json.dumps(self.importance, indent=1))
        if self.dle is not None:
            joblib.dump(self.dle, directory / DLE_FILE)


def measure(adapter: ModelAdapter, rows: pd.DataFrame, *, in_sample: bool, seed: int = 0) -> Insight:
    """Permutation importance (every model) and DLE (regressors, out of sample) on ``rows``:
    the validation rows with the model's predictions (``Baseline.rows``)."""
    notes: list[str] = []
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    try:
        importance = permutation(adapter, rows, seed=seed)
        importance["in_sample"] = in_sample
    except ValueError as exc:
        importance = None
        notes.append(f"no drift impact for this model: permutation importance failed ({exc})")
    seconds["importance"] = time.perf_counter() - t
    dle = None
    t = time.perf_counter()
    if adapter.schema.task == "regression" and not in_sample:
        try:
            dle = fit_dle(adapter.schema, rows, seed=seed)
        except ValueError as exc:
            notes.append(f"no label-free performance estimate (DLE) for this model: {exc}")
    seconds["dle"] = time.perf_counter() - t
    if importance is not None:
        importance["seconds"] = round(seconds["importance"], 3)
    return Insight(importance, dle, tuple(notes), seconds)


class _Served:
    """The adapter as :func:`~sklearn.inspection.permutation_importance` wants an
    estimator (it checks for ``fit``; the scoring callable does the predicting)."""

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter

    def fit(self, X: Any, y: Any = None) -> _Served:
        return self


def permutation(adapter: ModelAdapter, rows: pd.DataFrame, *, seed: int = 0) -> dict[str, Any]:
    """Permutation importance of each feature on (a bounded sample of) ``rows``; the JSON
    stored as ``importance.json``. Raises ValueError when it cannot be measured."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import accuracy_score, log_loss

    schema = adapter.schema
    names = list(schema.names)
    if len(rows) > IMPORTANCE_ROWS:
        rows = rows.sample(IMPORTANCE_ROWS, random_state=seed)
    X = rows[names].reset_index(drop=True)
    classification = schema.task == "classification"
    if classification:
        index = {c: i for i, c in enumerate(schema.classes)}
        y = np.array([index.get(plain(v), -1) for v in rows[schema.target]])
        X, y = X[y >= 0].reset_index(drop=True), y[y >= 0]
        k = len(schema.classes)
        metric = "log_loss" if adapter.has_proba else "accuracy"
    else:
        y = rows[schema.target].to_numpy(dtype=np.float64)
        metric = "mae"
    if len(X) < 2:
        raise ValueError(f"{len(X)} usable validation rows")

    def score(est: _Served, X_: pd.DataFrame, y_: np.ndarray) -> float:  # higher is better
        _, pred = predict_frame(est.adapter, X_)
        if not classification:
            return -float(np.mean(np.abs(y_ - pred.labels.astype(np.float64))))
        if metric == "log_loss":
            return -float(log_loss(y_, pred.proba, labels=list(range(k))))
        return float(accuracy_score(y_, pred.class_codes))

    repeats = int(max(1, min(MAX_REPEATS, MAX_PREDICTED_ROWS // max(1, len(X) * len(names)),
                             MAX_CALLS // max(1, len(names)))))
    res = permutation_importance(_Served(adapter), X, y, scoring=score, n_repeats=repeats, random_state=seed)
    return {"metric": metric, "rows": len(X), "repeats": repeats,
            "features": {n: {"mean": float(m), "std": float(s)}
                         for n, m, s in zip(names, res.importances_mean, res.importances_std)}}


def fit_dle(schema: ModelSchema, rows: pd.DataFrame, *, seed: int = 0) -> Dle:
    """The DLE loss models on the validation rows and the model's predictions on them."""
    features = {f.name: (rows[f.name].to_numpy(dtype=np.float64, na_value=np.nan) if f.kind == NUMERIC
                         else rows[f.name].to_numpy(dtype=object)) for f in schema.features}
    return Dle(features, rows[schema.target].to_numpy(dtype=np.float64),
               rows[PREDICTION_COLUMN].to_numpy(dtype=np.float64),
               categorical=[f.name for f in schema.categorical], seed=seed)


def read_importance(path: Path) -> dict[str, float] | None:
    """{feature: mean importance} stored with the model at ``path``, or None."""
    return _read(path / IMPORTANCE_FILE, lambda p: {k: float(v["mean"]) for k, v in
                                                    json.loads(p.read_text())["features"].items()})


def read_dle(path: Path) -> Dle | None:
    """The stored DLE loss models, or None (none stored, or unreadable: logged)."""
    got = _read(path / DLE_FILE, joblib.load)
    return got if isinstance(got, Dle) else None


def _read(file: Path, reader: Callable[[Path], Any]) -> Any:
    if not file.is_file():
        return None
    try:
        return reader(file)
    except Exception as exc:  # unpickling / parsing stored files raises anything; serve without it
        log.warning("%s cannot be read (%s: %s); serving without it", file, type(exc).__name__, exc)
        return None
