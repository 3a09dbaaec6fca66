"""DataFrames of raw feature columns turned into what serving builds from a request.

Registration calls the model on reference and validation rows; to measure what serving
will see, those rows go through the same representation a validated request has: numeric
features as float64 (NaN for missing), categorical features as object arrays of Python
scalars, category codes as in :class:`~monitoring.intake.validation.ValidatedBatch`.
:func:`predict_frame` then calls the model through its adapter, as serving does. No I/O.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from monitoring.intake.validation import MISSING_CODE, UNSEEN_CODE, ValidatedBatch
from monitoring.schema import NUMERIC, ModelSchema

from .adapters import ModelAdapter, Prediction, plain

__all__ = ["frame_to_batch", "frame_to_columns", "frame_to_model_input", "object_values", "plain", "predict_frame"]


def object_values(col: pd.Series) -> np.ndarray:
    """A column as an object array of Python scalars with NaN for missing (as serving builds it)."""
    vals = np.array([plain(v) for v in col.to_numpy()], dtype=object)
    vals[pd.isna(col).to_numpy()] = np.nan
    return vals


def frame_to_model_input(frame: pd.DataFrame, schema: ModelSchema) -> Any:
    """A DataFrame of raw feature columns -> what the model takes (as serving builds it)."""
    if schema.input_format == "array":
        return frame[list(schema.names)].to_numpy(dtype=np.float64, na_value=np.nan)
    cols = {}
    for f in schema.features:
        col = frame[f.name]
        if f.kind == NUMERIC:
            cols[f.name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cols[f.name] = object_values(col)
    return pd.DataFrame(cols, columns=list(schema.names))


def frame_to_columns(frame: pd.DataFrame, schema: ModelSchema) -> tuple[np.ndarray, np.ndarray]:
    """A DataFrame -> (numeric float64 matrix, categorical code matrix) in schema order."""
    if schema.numeric:
        numeric = np.column_stack([frame[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
                                   for f in schema.numeric])
    else:
        numeric = np.empty((len(frame), 0))
    codes = np.empty((len(frame), len(schema.categorical)), dtype=np.int32)
    for j, f in enumerate(schema.categorical):
        col = frame[f.name]
        if f.dtype == "str":
            col = col.where(col.isna(), col.astype(str))
        cat = pd.Categorical(col, categories=list(f.categories))
        c = cat.codes.astype(np.int32)
        c[(c == MISSING_CODE) & ~pd.isna(col).to_numpy()] = UNSEEN_CODE  # present but not a known category
        codes[:, j] = c
    return numeric, codes


def frame_to_batch(frame: pd.DataFrame, schema: ModelSchema) -> ValidatedBatch:
    """A DataFrame as the :class:`ValidatedBatch` a request with the same rows would give."""
    numeric, codes = frame_to_columns(frame, schema)
    cats = {f.name: object_values(frame[f.name]) for f in schema.categorical}
    return ValidatedBatch(len(frame), numeric, codes, cats, None)


def predict_frame(adapter: ModelAdapter, frame: pd.DataFrame) -> tuple[ValidatedBatch, Prediction]:
    """The rows as a validated batch, and the model's answer to it through ``adapter``
    (the model's own warnings, e.g. about feature names, silenced)."""
    batch = frame_to_batch(frame, adapter.schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return batch, adapter.predict(batch)
