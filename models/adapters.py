"""Model adapters: one calling convention for any scikit-learn-compatible model or callable.

An adapter turns a :class:`~monitoring.intake.validation.ValidatedBatch` into the input the
model expects (a float array, or a DataFrame with named and categorical columns) and
returns predictions, plus class probabilities where the model has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.schema import ModelSchema
from monitoring.intake.validation import ValidatedBatch


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for one batch.

    ``class_codes`` index into ``schema.classes`` (classifiers only; -1 for a label the
    schema does not know), so monitors never see free-text labels.
    """

    labels: np.ndarray
    proba: np.ndarray | None
    class_codes: np.ndarray | None


class ModelAdapter:
    """Wrap an estimator (predict / predict_proba) or a plain callable ``f(X) -> y``.

    Parameters
    ----------
    model : object
        The fitted estimator, pipeline or callable.
    schema : ModelSchema
        The model's stored schema (feature order, input format, classes).
    predict_from_proba : bool
        Take labels as the argmax of ``predict_proba`` instead of a second call to
        ``predict``; registration sets it only when the two were seen to agree.
    decision_threshold : float, optional
        Binary classifiers: predict the second class when its probability is at least
        this (the model's real decision rule, when it is not 0.5).
    """

    def __init__(self, model: Any, schema: ModelSchema, predict_from_proba: bool = False,
                 decision_threshold: float | None = None):
        self.model = model
        self.schema = schema
        self.has_proba = schema.task == "classification" and hasattr(model, "predict_proba")
        self.predict_from_proba = predict_from_proba and self.has_proba
        self._call = model.predict if hasattr(model, "predict") else model
        if not callable(self._call):
            raise TypeError(f"model of type {type(model).__name__} has no predict() and is not callable")
        self._classes = np.asarray(schema.classes, dtype=object) if schema.classes else None
        self._class_index = {c: i for i, c in enumerate(schema.classes)}
        if decision_threshold is not None and not (self.has_proba and len(schema.classes) == 2):
            raise ValueError("a decision threshold applies only to binary classifiers with predict_proba")
        self.decision_threshold = decision_threshold

    def model_input(self, batch: ValidatedBatch) -> Any:
        if self.schema.input_format == "array":
            return batch.numeric
        cols: dict[str, Any] = {}
        j = 0
        for f in self.schema.features:
            if f.kind == "numeric":
                cols[f.name] = batch.numeric[:, j]
                j += 1
            else:
                cols[f.name] = batch.categorical[f.name]
        return pd.DataFrame(cols, columns=list(self.schema.names))

    def predict(self, batch: ValidatedBatch) -> Prediction:
        X = self.model_input(batch)
        proba = None
        if self.has_proba:
            proba = np.asarray(self.model.predict_proba(X), dtype=np.float64)
        if self.decision_threshold is not None:
            labels = self._classes[(proba[:, 1] >= self.decision_threshold).astype(int)]
        elif self.predict_from_proba:
            labels = self._classes[proba.argmax(axis=1)]
        else:
            labels = np.asarray(self._call(X))
        if labels.shape[:1] != (batch.n_rows,):
            raise ValueError(f"model returned {labels.shape[0] if labels.ndim else 'a scalar'} "
                             f"predictions for {batch.n_rows} rows")
        codes = None
        if self.schema.task == "classification":
            codes = np.fromiter((self._class_index.get(plain(v), -1) for v in labels), dtype=np.int32,
                                count=labels.shape[0])
            if labels.dtype != object and codes.size and codes.min() >= 0:
                # the schema's own classes, matched by value: a model trained on 0.0/1.0 whose
                # classes were stored as 0/1 answers 1, as registered (see integral_classes)
                labels = self._classes[codes]
        return Prediction(labels, proba, codes)


def plain(v: Any) -> Any:
    """numpy scalar -> Python scalar, so labels match the JSON-friendly schema classes."""
    return v.item() if isinstance(v, np.generic) else v


def jsonable_labels(labels: np.ndarray) -> list[Any]:
    if labels.dtype.kind in "fiub":
        return labels.tolist()
    return [plain(v) for v in labels]
