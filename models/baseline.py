"""Baseline: the model's performance on labelled data it never saw.

Owns the validation rows: read from ``--validation`` into a bounded uniform sample
(:data:`MAX_VALIDATION_ROWS`), predicted through the adapter as serving would, and
scored with :mod:`monitoring.stats.performance`. The rows are kept with the model's
predictions (:data:`PREDICTION_COLUMN`) and class probabilities (:func:`proba_column`)
so that label-free estimators can be calibrated on them later.

Without validation data the reference sample stands in: the baseline is then in-sample
(optimistic), it is flagged so, and a note says performance alerts are disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.schema import ModelSchema
from monitoring.stats.performance import classification_metrics, regression_metrics

from .adapters import ModelAdapter, Prediction
from .data import Reservoir, iter_frames
from .errors import RegistrationError
from .frames import plain, predict_frame

MAX_VALIDATION_ROWS = 200_000
PREDICTION_COLUMN = "__prediction__"
IN_SAMPLE_NOTE = ("no --validation given: the baseline is measured on the reference data the model was "
                  "trained on (in-sample, optimistic); performance alerts are disabled for this model")


def proba_column(i: int) -> str:
    """Name of the validation column holding class ``i``'s probability."""
    return f"__proba_{i}__"


@dataclass(frozen=True)
class Baseline:
    """Metrics and the rows they were measured on (with predictions and probabilities)."""

    metrics: dict[str, float]
    rows: pd.DataFrame
    in_sample: bool
    notes: tuple[str, ...] = ()


def measure_baseline(adapter: ModelAdapter, validation: str | Path | None, sample: pd.DataFrame, *,
                     seed: int = 0) -> Baseline:
    """Score the model on ``validation`` (or, when None, on the reference ``sample``)."""
    schema = adapter.schema
    in_sample = validation is None
    val = sample.reset_index(drop=True) if in_sample else read_validation(validation, schema, seed=seed)
    try:
        _, pred = predict_frame(adapter, val[list(schema.names)])
    except Exception as exc:  # whatever the model raises, the user needs one line
        raise RegistrationError(f"the model cannot predict on the validation data ({type(exc).__name__}: {exc})") from None
    rows = val.reset_index(drop=True).copy()
    rows[PREDICTION_COLUMN] = pd.Series([plain(v) for v in pred.labels]).infer_objects()
    if pred.proba is not None:
        for i in range(len(schema.classes)):
            rows[proba_column(i)] = pred.proba[:, i]
    return Baseline(score(schema, val[schema.target].to_numpy(), pred), rows, in_sample,
                    (IN_SAMPLE_NOTE,) if in_sample else ())


def read_validation(path: str | Path, schema: ModelSchema, *, seed: int = 0) -> pd.DataFrame:
    """A uniform sample of at most :data:`MAX_VALIDATION_ROWS` labelled rows (features and target)."""
    target, names = schema.target, list(schema.names)
    reservoir = Reservoir(MAX_VALIDATION_ROWS, seed=seed + 1)
    for chunk in iter_frames(path):
        if target not in chunk.columns:
            raise RegistrationError(f"{path}: target column {target!r} not found")
        missing = [c for c in names if c not in chunk.columns]
        if missing:
            raise RegistrationError(f"{path}: missing feature column(s) {', '.join(missing[:10])}")
        reservoir.add(chunk[names + [target]])
    val = reservoir.frame
    if val is None or len(val) == 0:
        raise RegistrationError(f"{path}: no rows")
    if val[target].isna().any():
        raise RegistrationError(f"{path}: target column {target!r} has missing values")
    return val


def score(schema: ModelSchema, y_true: np.ndarray, pred: Prediction) -> dict[str, float]:
    """Performance metrics of ``pred`` against ``y_true`` for the schema's task."""
    if schema.task != "classification":
        return regression_metrics(y_true.astype(np.float64), pred.labels.astype(np.float64))
    classes = schema.classes
    unknown = set(map(plain, pd.unique(y_true))) - set(classes)
    if unknown:
        raise RegistrationError(f"validation labels {sorted(map(str, unknown))[:5]} are not classes the model knows "
                                f"({', '.join(map(str, classes))})")
    return classification_metrics([plain(v) for v in y_true], [plain(v) for v in pred.labels], pred.proba, classes)
