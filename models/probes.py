"""Capability probes: what the model accepts and returns, found by calling it.

Owns the part of the schema that the data cannot tell: whether the model's arithmetic is
float32 (a value above float32's maximum becomes inf inside it) or float64, the largest
magnitude it answers finitely, whether it takes missing numeric values, which
categorical features it takes unseen categories for, and whether ``predict`` is the
argmax of ``predict_proba`` (so serving may call the model once).

Every probe calls the model on a few reference rows in the representation serving uses
(:mod:`models.frames`): numeric features as float64, whatever the column's dtype in the
file, so an ``int64`` or ``bool`` column never has to hold a probe value such as 1e39.
A probe the model answers with an exception or a non-finite number counts as "not
taken"; only the first call (can the model predict on the reference rows at all?) turns
a failure into a :class:`RegistrationError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from monitoring.schema import NUMERIC, FeatureSpec, ModelSchema

from .errors import RegistrationError
from .frames import frame_to_model_input, plain

#: A category no reference data holds: offered to the model to see if it takes unseen values.
UNSEEN_PROBE = "__vigil_unseen_probe__"
UNSEEN_INT_PROBE = 10**9 + 7
PROBE_ROWS = 8
#: Above float32's maximum (3.4e38): a float32 model turns it into inf.
FLOAT32_OVERFLOW = 1e39


@dataclass(frozen=True)
class Capabilities:
    """What the probes found; :meth:`refine` writes it into the schema."""

    float_dtype: str
    max_abs: float | None
    accepts_nan: bool
    accepts_unseen: frozenset[str]
    predict_from_proba: bool

    def refine(self, schema: ModelSchema) -> ModelSchema:
        def spec(f: FeatureSpec) -> FeatureSpec:
            if f.kind == NUMERIC:
                return replace(f, nullable=f.nullable or self.accepts_nan)
            return replace(f, accepts_unseen=f.name in self.accepts_unseen)

        return replace(schema, features=tuple(spec(f) for f in schema.features), float_dtype=self.float_dtype,
                       max_abs=self.max_abs)


def probe_capabilities(model: Any, schema: ModelSchema, sample: pd.DataFrame) -> Capabilities:
    """Call the model on rows of ``sample`` (feature columns) altered one way at a time.

    Raises :class:`RegistrationError` when the model cannot predict on the rows unaltered.
    """
    call = model.predict if hasattr(model, "predict") else model
    rows = as_served(sample.head(PROBE_ROWS).reset_index(drop=True), schema)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.asarray(call(frame_to_model_input(rows, schema)))
    except Exception as exc:  # whatever the model raises, the user needs one line
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise RegistrationError(f"the model cannot predict on the reference data ({type(exc).__name__}: "
                                f"{first})") from None
    float_dtype, max_abs, accepts_nan = "float64", None, False
    if schema.numeric:
        float_dtype, max_abs = _float_range(call, rows, schema)
        accepts_nan = _answers(call, _with_numeric(rows, schema, np.nan), schema)
    unseen = frozenset(f.name for f in schema.categorical if _takes_unseen(call, rows, schema, f))
    return Capabilities(float_dtype, max_abs, accepts_nan, unseen, _predicts_argmax(model, call, schema, sample))


def as_served(frame: pd.DataFrame, schema: ModelSchema) -> pd.DataFrame:
    """A copy with every numeric feature as float64 (what serving hands the model), so
    probe values of any magnitude fit whatever the column's dtype in the file."""
    return frame.astype({f.name: np.float64 for f in schema.numeric})


def _with_numeric(rows: pd.DataFrame, schema: ModelSchema, value: float) -> pd.DataFrame:
    altered = rows.copy()
    altered.loc[:, [f.name for f in schema.numeric]] = value
    return altered


def _answers(call: Callable[[Any], Any], rows: pd.DataFrame, schema: ModelSchema) -> bool:
    """Does the model answer these rows without raising, and finitely?"""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(call(frame_to_model_input(rows, schema)))
    except Exception:  # a foreign model's refusal takes any form: it means "not taken"
        return False
    return out.dtype.kind not in "fc" or bool(np.isfinite(out).all())


def _float_range(call: Callable[[Any], Any], rows: pd.DataFrame, schema: ModelSchema) -> tuple[str, float | None]:
    """(float type, largest magnitude taken or None for the type's maximum)."""
    def takes(magnitude: float) -> bool:
        """Finite answers with every numeric feature at +magnitude, and at -magnitude?"""
        return all(_answers(call, _with_numeric(rows, schema, sign * magnitude), schema) for sign in (1.0, -1.0))

    float_dtype = "float64" if takes(FLOAT32_OVERFLOW) else "float32"
    return float_dtype, largest_magnitude(takes, 308 if float_dtype == "float64" else 38)


def largest_magnitude(takes: Callable[[float], bool], top_exponent: int) -> float | None:
    """The largest 10**k (k <= top_exponent) the model takes, by bisection on k; None if
    it takes even the float type's maximum (no limit beyond the type's)."""
    if takes(float(np.finfo(np.float64 if top_exponent > 38 else np.float32).max)):
        return None
    lo, hi = 0, top_exponent  # takes(10**lo) is assumed (the reference rows predicted)
    if not takes(1.0):
        return 1.0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if takes(10.0 ** mid):
            lo = mid
        else:
            hi = mid
    return 10.0 ** lo


def _takes_unseen(call: Callable[[Any], Any], rows: pd.DataFrame, schema: ModelSchema, f: FeatureSpec) -> bool:
    """A feature with too many categories to list takes unseen values by definition; a
    boolean has none to offer; otherwise offer a value of the feature's type."""
    if f.accepts_unseen:
        return True
    if f.dtype == "bool":
        return False
    unseen = rows.copy()
    unseen[f.name] = unseen[f.name].astype(object)
    unseen.loc[:, f.name] = UNSEEN_PROBE if f.dtype == "str" else (UNSEEN_INT_PROBE if f.dtype == "int" else None)
    return _answers(call, unseen, schema)


def _predicts_argmax(model: Any, call: Callable[[Any], Any], schema: ModelSchema, sample: pd.DataFrame) -> bool:
    """Is ``predict`` the argmax of ``predict_proba`` on every sample row? Then serving
    takes labels from the probabilities and calls the model once."""
    if schema.task != "classification" or not hasattr(model, "predict_proba"):
        return False
    X = frame_to_model_input(sample, schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proba = np.asarray(model.predict_proba(X))
        direct = np.asarray(call(X))
    argmax = np.asarray(schema.classes, dtype=object)[proba.argmax(axis=1)]
    return bool(all(plain(a) == plain(b) for a, b in zip(argmax, direct)))
