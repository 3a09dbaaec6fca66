"""Getting models in: ``register`` saves a model with its schema and reference artifact in
the BentoML model store; ``load`` brings it back for serving.

Files in the stored model's directory:

- ``model.joblib``        the estimator, pipeline or callable
- ``vigil.json``          schema, task, classes, baseline metrics, in-sample flag
- ``profile.json``        reference profile (sketches of features and predictions)
- ``reference.parquet``   a bounded uniform sample of the reference rows (with target)
- ``validation.parquet``  validation rows with the model's predictions (or, in-sample,
                          the reference sample's)

Exception tree::

    ValueError
     ├── RegistrationError   model or data unusable; one clear line for the CLI
     └── DataError           (models.data) file unreadable or lacking a column
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.performance import classification_metrics, regression_metrics
from monitoring.stats.profile import Profile, edges_from_sample
from monitoring.schema import (CATEGORICAL, NUMERIC, TASKS, FeatureSpec, ModelSchema, infer_feature_specs)
from monitoring.stats.sketches import quantile_edges

from .adapters import ModelAdapter
from .data import Reservoir, iter_frames

log = logging.getLogger(__name__)

ARTIFACT_VERSION = 1
MODEL_FILE = "model.joblib"
META_FILE = "vigil.json"
PROFILE_FILE = "profile.json"
REFERENCE_FILE = "reference.parquet"
VALIDATION_FILE = "validation.parquet"
SAMPLE_ROWS = 10_000
MAX_VALIDATION_ROWS = 200_000
UNSEEN_PROBE = "__vigil_unseen_probe__"


class RegistrationError(ValueError):
    """The model or its data cannot be registered; the message is one clear line."""


@dataclass(frozen=True)
class Registered:
    tag: str
    task: str
    in_sample: bool
    baseline: dict[str, float]
    n_reference: int
    n_validation: int
    warnings: tuple[str, ...] = ()


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


# -- helpers ----------------------------------------------------------------------------

def frame_to_model_input(frame, schema: ModelSchema):
    """A DataFrame of raw feature columns -> what the model takes (as serving builds it)."""
    import pandas as pd

    if schema.input_format == "array":
        return frame[list(schema.names)].to_numpy(dtype=np.float64, na_value=np.nan)
    cols = {}
    for f in schema.features:
        col = frame[f.name]
        if f.kind == NUMERIC:
            cols[f.name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cols[f.name] = _object_values(col)
    return pd.DataFrame(cols, columns=list(schema.names))


def _object_values(col) -> np.ndarray:
    """A column as an object array of Python scalars with NaN for missing (as serving builds it)."""
    import pandas as pd

    vals = np.array([_plain(v) for v in col.to_numpy()], dtype=object)
    vals[pd.isna(col).to_numpy()] = np.nan
    return vals


def frame_to_columns(frame, schema: ModelSchema) -> tuple[np.ndarray, np.ndarray]:
    """A DataFrame -> (numeric float64 matrix, categorical code matrix) in schema order."""
    import pandas as pd

    numeric = np.column_stack([frame[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
                               for f in schema.numeric]) if schema.numeric else np.empty((len(frame), 0))
    codes = np.empty((len(frame), len(schema.categorical)), dtype=np.int32)
    for j, f in enumerate(schema.categorical):
        col = frame[f.name]
        if f.dtype == "str":
            col = col.where(col.isna(), col.astype(str))
        cat = pd.Categorical(col, categories=list(f.categories))
        c = cat.codes.astype(np.int32)
        c[(c == -1) & ~pd.isna(col).to_numpy()] = -2  # present but not a known category
        codes[:, j] = c
    return numeric, codes


def _merge_spec(a: FeatureSpec, b: FeatureSpec) -> FeatureSpec:
    if a.kind != b.kind:
        raise RegistrationError(f"column {a.name!r} holds numbers in some rows and text in others; "
                                "clean it or pass it as categorical")
    if a.kind == NUMERIC:
        lo = [v for v in (a.minimum, b.minimum) if v is not None]
        hi = [v for v in (a.maximum, b.maximum) if v is not None]
        return replace(a, nullable=a.nullable or b.nullable, dtype="float" if "float" in (a.dtype, b.dtype) else "int",
                       minimum=min(lo) if lo else None, maximum=max(hi) if hi else None)
    cats = sorted(set(a.categories) | set(b.categories), key=lambda c: (type(c).__name__, c))
    return replace(a, nullable=a.nullable or b.nullable, categories=tuple(cats),
                   accepts_unseen=a.accepts_unseen or b.accepts_unseen)


def _predicts(fn: Callable[[], Any]) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(fn())
        return out.dtype.kind not in "fc" or bool(np.isfinite(out).all())
    except Exception:
        return False


def _largest_magnitude(takes: Callable[[float], bool], top_exponent: int) -> float | None:
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


def _infer_task(model: Any, target_sample) -> str:
    if hasattr(model, "predict_proba") or hasattr(model, "classes_"):
        return "classification"
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(target_sample.dtype) or pd.api.types.is_bool_dtype(target_sample.dtype):
        return "classification"
    return "regression"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# -- register ---------------------------------------------------------------------------

def register(model_path: str | Path, reference: str | Path, target: str, *,
             validation: str | Path | None = None, name: str | None = None, task: str | None = None,
             categorical: Sequence[str] = (), sample_rows: int = SAMPLE_ROWS, seed: int = 0,
             progress: Callable[[int], None] | None = None, model: Any = None) -> Registered:
    """Register a model file (or an in-memory ``model``) with its reference profile.

    Returns the stored tag and what was measured. Raises :class:`RegistrationError` or
    :class:`DataError` with a one-line message on unusable input.
    """
    import joblib
    import pandas as pd

    notes: list[str] = []
    if task is not None and task not in TASKS:
        raise RegistrationError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    if model is None:
        try:
            model = joblib.load(model_path)
        except FileNotFoundError:
            raise RegistrationError(f"{model_path}: no such file") from None
        except Exception as exc:
            raise RegistrationError(f"{model_path}: cannot load model ({type(exc).__name__}: {exc})") from None
    if not (hasattr(model, "predict") or callable(model)):
        raise RegistrationError(f"{model_path}: object of type {type(model).__name__} has no predict() and is not callable")

    # pass 1: schema, reservoir sample
    reservoir = Reservoir(sample_rows, seed=seed)
    specs: dict[str, FeatureSpec] | None = None
    feature_names: list[str] | None = None
    n_ref = 0
    for chunk in iter_frames(reference):
        if target not in chunk.columns:
            raise RegistrationError(f"{reference}: target column {target!r} not found; columns are "
                                    f"{', '.join(map(str, chunk.columns[:20]))}")
        if feature_names is None:
            names_in = getattr(model, "feature_names_in_", None)
            if names_in is not None:
                feature_names = [str(c) for c in names_in]
                missing = [c for c in feature_names if c not in chunk.columns]
                if missing:
                    raise RegistrationError(f"{reference}: the model expects column(s) {', '.join(missing)}, "
                                            "absent from the reference data")
                extra = [c for c in chunk.columns if c not in feature_names and c != target]
                if extra:
                    notes.append(f"ignoring reference column(s) the model does not use: {', '.join(map(str, extra[:10]))}")
            else:
                feature_names = [str(c) for c in chunk.columns if c != target]
        chunk_specs = infer_feature_specs(chunk[feature_names], categorical_hint=categorical)
        specs = ({s.name: s for s in chunk_specs} if specs is None
                 else {s.name: _merge_spec(specs[s.name], s) for s in chunk_specs})
        reservoir.add(chunk[feature_names + [target]])
        n_ref += len(chunk)
        if progress:
            progress(len(chunk))
    if specs is None or n_ref == 0:
        raise RegistrationError(f"{reference}: no rows")
    sample = reservoir.frame
    y_sample = sample[target]
    if y_sample.isna().any():
        raise RegistrationError(f"{reference}: target column {target!r} has missing values")
    task = task or _infer_task(model, y_sample)
    features = [specs[n] for n in feature_names]
    has_cat = any(f.kind == CATEGORICAL for f in features)
    input_format = "frame" if (has_cat or getattr(model, "feature_names_in_", None) is not None) else "array"
    if task == "classification":
        classes = getattr(model, "classes_", None)
        if classes is None:
            classes = sorted(pd.unique(y_sample))
        classes = tuple(_plain(c) for c in classes)
    else:
        classes = ()
    schema = ModelSchema(tuple(features), task=task, classes=classes, target=target, input_format=input_format)
    X_sample = sample[feature_names]

    # probes: can the model predict at all, take missing values, unseen categories, big floats?
    probe = X_sample.head(8).reset_index(drop=True)
    call = model.predict if hasattr(model, "predict") else model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.asarray(call(frame_to_model_input(probe, schema)))
    except Exception as exc:
        raise RegistrationError(f"the model cannot predict on the reference data ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    num_names = [f.name for f in features if f.kind == NUMERIC]
    max_abs = None
    if num_names:
        def takes(magnitude: float) -> bool:
            """Does the model give finite answers with every numeric feature at +-magnitude?"""
            for sign in (1.0, -1.0):
                big = probe.copy()
                big.loc[:, num_names] = sign * magnitude
                if not _predicts(lambda: call(frame_to_model_input(big, schema))):
                    return False
            return True

        float_dtype = "float64" if takes(1e39) else "float32"
        max_abs = _largest_magnitude(takes, 308 if float_dtype == "float64" else 38)
        nan = probe.copy()
        nan[num_names] = np.nan
        accepts_nan = _predicts(lambda: call(frame_to_model_input(nan, schema)))
    else:
        float_dtype, accepts_nan = "float64", False
    refined = []
    for f in features:
        if f.kind == NUMERIC:
            refined.append(replace(f, nullable=f.nullable or accepts_nan))
        else:
            unseen = probe.copy()
            unseen[f.name] = unseen[f.name].astype(object)
            unseen.loc[:, f.name] = UNSEEN_PROBE if f.dtype == "str" else (10**9 + 7 if f.dtype == "int" else None)
            ok = f.accepts_unseen or (f.dtype != "bool" and _predicts(lambda: call(frame_to_model_input(unseen, schema))))
            refined.append(replace(f, accepts_unseen=ok))
    schema = replace(schema, features=tuple(refined), float_dtype=float_dtype, max_abs=max_abs)

    adapter = ModelAdapter(model, schema)
    predict_from_proba = False
    if adapter.has_proba:
        Xs = frame_to_model_input(X_sample, schema)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = np.asarray(model.predict_proba(Xs))
            direct = np.asarray(call(Xs))
        argmax = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
        predict_from_proba = bool(all(_plain(a) == _plain(b) for a, b in zip(argmax, direct)))
    adapter = ModelAdapter(model, schema, predict_from_proba=predict_from_proba)

    def predict_frame(frame):
        from monitoring.intake.validation import ValidatedBatch

        numeric, codes = frame_to_columns(frame, schema)
        cats = {f.name: _object_values(frame[f.name]) for f in schema.categorical}
        batch = ValidatedBatch(len(frame), numeric, codes, cats, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return numeric, codes, adapter.predict(batch)

    # pass 2: reference profile over every row, bins from the sample
    numeric_sample, _ = frame_to_columns(X_sample, schema)
    pred_edges = None
    if task == "regression":
        _, _, sp = predict_frame(X_sample)
        pred_edges = quantile_edges(sp.labels.astype(np.float64), 20)
    detector = PcaDetector.fit(numeric_sample, seed=seed)
    profile = Profile.empty(schema, edges_from_sample(schema, numeric_sample), pred_edges, detector=detector)
    for chunk in iter_frames(reference):
        numeric, codes, pred = predict_frame(chunk[feature_names])
        profile.update(numeric, codes, class_codes=pred.class_codes, proba=pred.proba,
                       values=pred.labels.astype(np.float64) if task == "regression" else None,
                       mv_errors=None if detector is None else detector.log_errors(numeric))

    # validation set (or in-sample fallback) and baseline metrics
    in_sample = validation is None
    if in_sample:
        val = sample.reset_index(drop=True)
        notes.append("no --validation given: the baseline is measured on the reference data the model was "
                     "trained on (in-sample, optimistic); performance alerts are disabled for this model")
    else:
        vr = Reservoir(MAX_VALIDATION_ROWS, seed=seed + 1)
        for chunk in iter_frames(validation):
            if target not in chunk.columns:
                raise RegistrationError(f"{validation}: target column {target!r} not found")
            missing = [c for c in feature_names if c not in chunk.columns]
            if missing:
                raise RegistrationError(f"{validation}: missing feature column(s) {', '.join(missing[:10])}")
            vr.add(chunk[feature_names + [target]])
        val = vr.frame
        if val is None or len(val) == 0:
            raise RegistrationError(f"{validation}: no rows")
        if val[target].isna().any():
            raise RegistrationError(f"{validation}: target column {target!r} has missing values")
    try:
        _, _, vp = predict_frame(val[feature_names])
    except Exception as exc:
        raise RegistrationError(f"the model cannot predict on the validation data ({type(exc).__name__}: {exc})") from None
    y_val = val[target].to_numpy()
    if task == "classification":
        unknown = set(map(_plain, pd.unique(y_val))) - set(classes)
        if unknown:
            raise RegistrationError(f"validation labels {sorted(map(str, unknown))[:5]} are not classes the model knows "
                                    f"({', '.join(map(str, classes))})")
        baseline = classification_metrics([_plain(v) for v in y_val], [_plain(v) for v in vp.labels], vp.proba, classes)
    else:
        baseline = regression_metrics(y_val.astype(np.float64), vp.labels.astype(np.float64))
    val_out = val.reset_index(drop=True).copy()
    val_out["__prediction__"] = pd.Series([_plain(v) for v in vp.labels]).infer_objects()
    if vp.proba is not None:
        for i, c in enumerate(classes):
            val_out[f"__proba_{i}__"] = vp.proba[:, i]

    meta = {
        "artifact_version": ARTIFACT_VERSION,
        "schema": schema.to_dict(),
        "in_sample": in_sample,
        "baseline": baseline,
        "n_reference": n_ref,
        "n_validation": int(len(val)),
        "predict_from_proba": predict_from_proba,
        "model_type": f"{type(model).__module__}.{type(model).__qualname__}",
    }
    name = name or Path(model_path).stem if model_path else name
    tag = _save(name or "model", model, meta, profile, sample, val_out)
    for n in notes:
        log.warning(n)
    return Registered(tag=tag, task=task, in_sample=in_sample, baseline=baseline, n_reference=n_ref,
                      n_validation=int(len(val)), warnings=tuple(notes))


def _save(name: str, model: Any, meta: dict[str, Any], profile: Profile, sample, val) -> str:
    import bentoml
    import joblib

    def parquet_safe(df):
        df = df.copy()
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].astype(str).where(df[c].notna(), None)
        df.columns = [str(c) for c in df.columns]
        return df

    labels = {"managed-by": "vigil", "task": meta["schema"]["task"]}
    small_meta = {"vigil_artifact_version": ARTIFACT_VERSION, "in_sample": meta["in_sample"],
                  "task": meta["schema"]["task"], **{f"baseline_{k}": v for k, v in meta["baseline"].items()}}
    try:
        with bentoml.models.create(name, labels=labels, metadata=small_meta) as m:
            joblib.dump(model, m.path_of(MODEL_FILE))
            Path(m.path_of(META_FILE)).write_text(json.dumps(meta, indent=1))
            Path(m.path_of(PROFILE_FILE)).write_text(json.dumps(profile.to_dict()))
            parquet_safe(sample).to_parquet(m.path_of(REFERENCE_FILE), index=False)
            parquet_safe(val).to_parquet(m.path_of(VALIDATION_FILE), index=False)
    except ValueError as exc:
        raise RegistrationError(f"cannot save model as {name!r}: {exc}") from None
    return str(m.tag)


# -- load -------------------------------------------------------------------------------

def load(tag_or_model: Any) -> LoadedModel:
    """Load a registered model by tag (``name:version`` or ``name:latest``) or stored Model."""
    import bentoml
    import joblib

    if isinstance(tag_or_model, str):
        try:
            stored = bentoml.models.get(tag_or_model)
        except bentoml.exceptions.NotFound:
            raise RegistrationError(f"model {tag_or_model!r} is not in the model store "
                                    "(register it with `vigil register`, or `vigil demo` for the demo models)") from None
    else:
        stored = tag_or_model
    path = Path(stored.path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise RegistrationError(f"model {stored.tag} was not registered by Vigil (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("artifact_version") != ARTIFACT_VERSION:
        raise RegistrationError(f"model {stored.tag} has artifact version {meta.get('artifact_version')}; "
                                f"this Vigil reads version {ARTIFACT_VERSION}")
    schema = ModelSchema.from_dict(meta["schema"])
    model = joblib.load(path / MODEL_FILE)
    profile = Profile.from_dict(json.loads((path / PROFILE_FILE).read_text()))
    adapter = ModelAdapter(model, schema, predict_from_proba=bool(meta.get("predict_from_proba")))
    return LoadedModel(tag=str(stored.tag), name=stored.tag.name, version=str(stored.tag.version),
                       adapter=adapter, schema=schema, profile=profile, meta=meta, path=path)


def read_schema(tag: str) -> ModelSchema:
    """Only the schema (cheap: no model unpickling), e.g. to publish the OpenAPI spec."""
    import bentoml

    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise RegistrationError(f"model {tag!r} is not in the model store "
                                "(register it with `vigil register`, or `vigil demo` for the demo models)") from None
    meta_path = Path(stored.path) / META_FILE
    if not meta_path.is_file():
        raise RegistrationError(f"model {stored.tag} was not registered by Vigil (no {META_FILE})")
    return ModelSchema.from_dict(json.loads(meta_path.read_text())["schema"])


def load_validation(loaded: LoadedModel):
    """The stored validation rows as (y_true, y_pred, proba): class indices for classifiers
    (matched by value, or by text where Parquet stored the labels as text), values for
    regressors; proba None without probabilities."""
    import pandas as pd

    val = pd.read_parquet(loaded.path / VALIDATION_FILE)
    schema = loaded.schema
    target = schema.target
    proba_cols = [c for c in val.columns if c.startswith("__proba_")]
    proba = val[sorted(proba_cols, key=lambda c: int(c[8:-2]))].to_numpy(dtype=np.float64) if proba_cols else None
    if schema.task == "classification":
        by_value = {c: i for i, c in enumerate(schema.classes)}
        by_text = {str(c): i for i, c in enumerate(schema.classes)}

        def code(v):
            v = _plain(v)
            return by_value[v] if v in by_value else by_text.get(str(v), -1)

        y_true = np.array([code(v) for v in val[target]], dtype=int)
        y_pred = np.array([code(v) for v in val["__prediction__"]], dtype=int)
        keep = (y_true >= 0) & (y_pred >= 0)
        return y_true[keep], y_pred[keep], None if proba is None else proba[keep]
    return (val[target].to_numpy(dtype=np.float64), val["__prediction__"].to_numpy(dtype=np.float64), None)
