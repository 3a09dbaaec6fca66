"""A registered model in BentoML's model store: how it is written and read back.

This module owns the stored layout; nothing else knows file names. Files in the stored
model's directory:

- ``model.joblib``        the estimator, pipeline or callable (joblib; cloudpickle for one
                          pickle cannot write by reference, see models.pickles)
- ``vigil.json``          schema, task, classes, baseline metrics, in-sample flag
- ``profile.json``        reference profile (sketches of features and predictions)
- ``reference.parquet``   a bounded uniform sample of the reference rows (with target)
- ``validation.parquet``  validation rows with the model's predictions (or, in-sample,
                          the reference sample's)
- ``importance.json``, ``dle.joblib``  optional: written by :mod:`models.insight` (which
                          owns those two names) through ``save_model``'s ``extras``

A model whose ``vigil.json`` carries another ``artifact_version`` is refused with a
:class:`RegistrationError`, never half-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import bentoml
import numpy as np
import pandas as pd

from monitoring.schema import ModelSchema
from monitoring.stats.profile import Profile

from .adapters import ModelAdapter
from .baseline import PREDICTION_COLUMN, proba_column
from .errors import RegistrationError
from .frames import plain
from .pickles import dump_model, read_model

ARTIFACT_VERSION = 1
MODEL_FILE = "model.joblib"
META_FILE = "vigil.json"
PROFILE_FILE = "profile.json"
REFERENCE_FILE = "reference.parquet"
VALIDATION_FILE = "validation.parquet"


@dataclass
class LoadedModel:
    """A registered model ready to serve."""

    tag: str
    name: str
    version: str
    adapter: ModelAdapter
    schema: ModelSchema
    profile: Profile
    meta: dict[str, Any]
    path: Path

    @property
    def in_sample(self) -> bool:
        return bool(self.meta.get("in_sample"))


def save_model(name: str, model: Any, meta: dict[str, Any], profile: Profile,
               sample: pd.DataFrame, validation: pd.DataFrame,
               extras: Callable[[Path], None] | None = None) -> str:
    """Write a new version of ``name`` to the model store; returns its tag. ``extras``
    writes further files into the new model's directory before it is committed."""
    labels = {"managed-by": "vigil", "task": meta["schema"]["task"]}
    small_meta = {"vigil_artifact_version": ARTIFACT_VERSION, "in_sample": meta["in_sample"],
                  "task": meta["schema"]["task"], **{f"baseline_{k}": v for k, v in meta["baseline"].items()}}
    try:
        with bentoml.models.create(name, labels=labels, metadata=small_meta) as m:
            dump_model(model, m.path_of(MODEL_FILE))
            Path(m.path_of(META_FILE)).write_text(json.dumps({"artifact_version": ARTIFACT_VERSION, **meta},
                                                             indent=1))
            Path(m.path_of(PROFILE_FILE)).write_text(json.dumps(profile.to_dict()))
            _parquet_safe(sample).to_parquet(m.path_of(REFERENCE_FILE), index=False)
            _parquet_safe(validation).to_parquet(m.path_of(VALIDATION_FILE), index=False)
            if extras is not None:
                extras(Path(m.path))
    except ValueError as exc:
        raise RegistrationError(f"cannot save model as {name!r}: {exc}") from None
    return str(m.tag)


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns as text (Parquet needs one type per column), column names as text."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype(str).where(df[c].notna(), None)
    df.columns = [str(c) for c in df.columns]
    return df


def _stored(tag: str) -> Any:
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise RegistrationError(f"model {tag!r} is not in the model store "
                                "(register it with `vigil register`, or `vigil demo` for the demo models)") from None


def _read_meta(stored: Any) -> dict[str, Any]:
    meta_path = Path(stored.path) / META_FILE
    if not meta_path.is_file():
        raise RegistrationError(f"model {stored.tag} was not registered by Vigil (no {META_FILE})")
    return json.loads(meta_path.read_text())


def load(tag_or_model: Any) -> LoadedModel:
    """Load a registered model by tag (``name:version`` or ``name:latest``) or stored Model."""
    stored = _stored(tag_or_model) if isinstance(tag_or_model, str) else tag_or_model
    meta = _read_meta(stored)
    if meta.get("artifact_version") != ARTIFACT_VERSION:
        raise RegistrationError(f"model {stored.tag} has artifact version {meta.get('artifact_version')}; "
                                f"this Vigil reads version {ARTIFACT_VERSION}")
    path = Path(stored.path)
    schema = ModelSchema.from_dict(meta["schema"])
    model, _ = read_model(path / MODEL_FILE, what=f"model {stored.tag}", modules=meta.get("modules"))
    profile = Profile.from_dict(json.loads((path / PROFILE_FILE).read_text()))
    adapter = ModelAdapter(model, schema, predict_from_proba=bool(meta.get("predict_from_proba")))
    return LoadedModel(tag=str(stored.tag), name=stored.tag.name, version=str(stored.tag.version),
                       adapter=adapter, schema=schema, profile=profile, meta=meta, path=path)


def read_schema(tag: str) -> ModelSchema:
    """Only the schema (cheap: no model unpickling), e.g. to publish the OpenAPI spec."""
    return ModelSchema.from_dict(_read_meta(_stored(tag))["schema"])


def load_validation(loaded: LoadedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The stored validation rows as (y_true, y_pred, proba): class indices for classifiers
    (matched by value, or by text where Parquet stored the labels as text), values for
    regressors; proba None without probabilities."""
    val = pd.read_parquet(loaded.path / VALIDATION_FILE)
    schema = loaded.schema
    target = schema.target
    proba_cols = [proba_column(i) for i in range(len(schema.classes)) if proba_column(i) in val.columns]
    proba = val[proba_cols].to_numpy(dtype=np.float64) if proba_cols else None
    if schema.task != "classification":
        return val[target].to_numpy(dtype=np.float64), val[PREDICTION_COLUMN].to_numpy(dtype=np.float64), None
    by_value = {c: i for i, c in enumerate(schema.classes)}
    by_text = {str(c): i for i, c in enumerate(schema.classes)}

    def code(v: Any) -> int:
        v = plain(v)
        return by_value[v] if v in by_value else by_text.get(str(v), -1)

    y_true = np.array([code(v) for v in val[target]], dtype=int)
    y_pred = np.array([code(v) for v in val[PREDICTION_COLUMN]], dtype=int)
    keep = (y_true >= 0) & (y_pred >= 0)
    return y_true[keep], y_pred[keep], None if proba is None else proba[keep]


def validation_rows(loaded: LoadedModel) -> pd.DataFrame:
    """The stored validation rows: the features and the target, without the model's
    predictions (what ``vigil simulate`` replays through ``/monitoring/sample``)."""
    val = pd.read_parquet(loaded.path / VALIDATION_FILE)
    return val[[*loaded.schema.names, loaded.schema.target]]
