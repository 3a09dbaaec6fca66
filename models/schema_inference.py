"""Schema inference: the first pass over the reference data.

Owns what the stored :class:`~monitoring.schema.ModelSchema` says before the model is
probed: which columns are features (the model's ``feature_names_in_`` when it has them,
else every column but the target), each feature's kind (numeric or categorical), dtype
(``int``/``float``; ``str``/``int``/``bool``), nullability and categories, the task, the
classes and the input format. Per-column inference is
:func:`monitoring.schema.infer_feature_specs`, run chunk by chunk; this module merges the
chunks' answers, so memory stays bounded by the chunk size and the reservoir sample.

Chunks are merged so that the result does not depend on the chunking: a column whose
dtype differs between chunks gets the wider one (``int`` and ``float`` give ``float``;
categories of different types give text); a column that is entirely missing in one chunk
(which reads as numeric NaN there) takes the kind the other chunks show; a categorical
feature with more than :data:`~monitoring.schema.MAX_CATEGORIES` distinct values over all
chunks keeps no category list and takes unseen values, as in one chunk. Id- and
date-like columns are exempt from drift, with a warning (:mod:`models.column_roles`).
Errors are :class:`RegistrationError` with one line: among them a ``--categorical`` or
``--monitor`` name that is no feature (with a did-you-mean), and a ``--task`` the model
and target contradict ("did you mean --task regression?").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from monitoring.schema import CATEGORICAL, MAX_CATEGORIES, NUMERIC, FeatureSpec, ModelSchema, infer_feature_specs

from .column_roles import check_names, exempt_ids_and_dates
from .data import Reservoir, iter_frames
from .errors import RegistrationError
from .frames import plain

#: A classifier whose target has more distinct numbers than this, or any that is not a
#: whole number, and which declares no classes of its own, is probably a regressor.
MAX_NUMERIC_CLASSES = 50


@dataclass(frozen=True)
class ReferenceScan:
    """What the first pass over the reference data found.

    ``sample`` is a bounded uniform sample of the reference rows (features and target);
    ``notes`` are warnings for the user, in the order they arose.
    """

    schema: ModelSchema
    sample: pd.DataFrame
    n_rows: int
    notes: tuple[str, ...]
    roles: dict[str, str] = field(default_factory=dict)  # id- or date-like features, exempt or kept

    @property
    def features(self) -> pd.DataFrame:
        """The sample's feature columns, in schema order."""
        return self.sample[list(self.schema.names)]


def scan_reference(model: Any, reference: str | Path, target: str, *, task: str | None = None,
                   categorical: Sequence[str] = (), monitor: Sequence[str] = (), sample_rows: int, seed: int = 0,
                   progress: Callable[[int], None] | None = None) -> ReferenceScan:
    """Read the reference data once: feature specs merged over chunks, a uniform sample.

    ``task`` None infers it from the model and the target; ``monitor`` names id- or
    date-like features to keep tested for drift.
    """
    reservoir = Reservoir(sample_rows, seed=seed)
    specs: dict[str, FeatureSpec] = {}
    feature_names: list[str] | None = None
    notes: list[str] = []
    for chunk in iter_frames(reference):
        if target not in chunk.columns:
            raise RegistrationError(f"{reference}: target column {target!r} not found; columns are "
                                    f"{', '.join(map(str, chunk.columns[:20]))}")
        if feature_names is None:
            feature_names = _feature_names(model, chunk.columns, target, reference, notes)
            check_names(categorical, feature_names, "--categorical", target)
        for s in infer_feature_specs(chunk[feature_names], categorical_hint=categorical):
            specs[s.name] = merge_spec(specs[s.name], s) if s.name in specs else s
        reservoir.add(chunk[feature_names + [target]])
        if progress:
            progress(len(chunk))
    if feature_names is None or reservoir.seen == 0:
        raise RegistrationError(f"{reference}: no rows")
    sample = reservoir.frame
    if sample[target].isna().any():
        raise RegistrationError(f"{reference}: target column {target!r} has missing values")
    features, roles, role_notes = exempt_ids_and_dates([specs[n] for n in feature_names], sample, reservoir.seen,
                                                       keep=monitor)
    notes.extend(role_notes)
    if task is not None:
        check_task(model, sample[target], task)
    schema = _assemble(model, features, sample[target], task or infer_task(model, sample[target]))
    return ReferenceScan(schema, sample, reservoir.seen, tuple(notes), roles)


def _feature_names(model: Any, columns: pd.Index, target: str, reference: str | Path, notes: list[str]) -> list[str]:
    """The model's own feature names when it declares them, else every column but the target."""
    names_in = getattr(model, "feature_names_in_", None)
    if names_in is None:
        return [str(c) for c in columns if c != target]
    names = [str(c) for c in names_in]
    missing = [c for c in names if c not in columns]
    if missing:
        raise RegistrationError(f"{reference}: the model expects column(s) {', '.join(missing)}, "
                                "absent from the reference data")
    extra = [c for c in columns if c not in names and c != target]
    if extra:
        notes.append(f"ignoring reference column(s) the model does not use: {', '.join(map(str, extra[:10]))}")
    return names


def _assemble(model: Any, features: list[FeatureSpec], y: pd.Series, task: str) -> ModelSchema:
    has_cat = any(f.kind == CATEGORICAL for f in features)
    declares_names = getattr(model, "feature_names_in_", None) is not None
    input_format = "frame" if (has_cat or declares_names) else "array"
    classes: tuple = ()
    if task == "classification":
        known = getattr(model, "classes_", None)
        classes = integral_classes(tuple(plain(c) for c in (known if known is not None else sorted(pd.unique(y)))))
    return ModelSchema(tuple(features), task=task, classes=classes, target=str(y.name), input_format=input_format)


def integral_classes(classes: tuple) -> tuple:
    """Float classes that are all whole numbers (``0.0, 1.0``: a target column read as
    float because it had a gap, or written so) as integers: JSON clients send and read
    ``1``, and the model's ``1.0`` is matched to the class ``1`` by value when serving."""
    if classes and all(type(c) is float and c.is_integer() for c in classes):
        return tuple(int(c) for c in classes)
    return classes


def merge_spec(a: FeatureSpec, b: FeatureSpec) -> FeatureSpec:
    """One feature's specs from two chunks of the same data -> the spec of both.

    Before probing, ``accepts_unseen`` marks only a feature with too many categories to
    list; once a chunk says so, the merged spec lists none either.
    """
    if a.kind != b.kind:
        a, b = _align_kinds(a, b)
    if a.kind == NUMERIC:
        lo = [v for v in (a.minimum, b.minimum) if v is not None]
        hi = [v for v in (a.maximum, b.maximum) if v is not None]
        return replace(a, nullable=a.nullable or b.nullable, dtype="float" if "float" in (a.dtype, b.dtype) else "int",
                       minimum=min(lo) if lo else None, maximum=max(hi) if hi else None)
    if a.dtype != b.dtype:
        a, b = replace(a, dtype="str"), replace(b, dtype="str")
    cats = sorted({str(c) if a.dtype == "str" else c for c in a.categories + b.categories},
                  key=lambda c: (type(c).__name__, c))
    too_many = len(cats) > MAX_CATEGORIES or a.accepts_unseen or b.accepts_unseen
    return replace(a, nullable=a.nullable or b.nullable, categories=() if too_many else tuple(cats),
                   accepts_unseen=too_many)


def _align_kinds(a: FeatureSpec, b: FeatureSpec) -> tuple[FeatureSpec, FeatureSpec]:
    """A chunk where the column is entirely missing reads as numeric (all NaN): it takes
    the other chunk's kind. Numbers in some chunks and text in others is an error."""
    for empty, other in ((a, b), (b, a)):
        if empty.kind == NUMERIC and empty.minimum is None:
            return other, replace(other, nullable=True, categories=())
    raise RegistrationError(f"column {a.name!r} holds numbers in some rows and text in others; "
                            "clean it or pass it as categorical")


def infer_task(model: Any, y: pd.Series) -> str:
    """Classification when the model says so (``predict_proba``, ``classes_``) or the target
    is not numeric (or is boolean); regression otherwise."""
    if hasattr(model, "predict_proba") or hasattr(model, "classes_"):
        return "classification"
    if not pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype):
        return "classification"
    return "regression"


def check_task(model: Any, y: pd.Series, task: str) -> None:
    """A ``--task`` the model and the target contradict is a :class:`RegistrationError`
    with a did-you-mean, rather than ~200 numbers taken as classes."""
    declares_classes = hasattr(model, "predict_proba") or hasattr(model, "classes_")
    numeric = pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype)
    if task == "classification" and numeric and not declares_classes:
        values = pd.unique(y.dropna())
        fractional = bool((values != values.round()).any())
        if fractional or len(values) > MAX_NUMERIC_CLASSES:
            shown = ", ".join(f"{v:g}" for v in values[:3])
            raise RegistrationError(
                f"--task classification: target {y.name!r} holds {len(values):,} distinct numbers (e.g. {shown})"
                f"{', not whole numbers' if fractional else ''} and the model declares no classes "
                "(no predict_proba or classes_); did you mean --task regression?")
    if task == "regression" and (declares_classes or not numeric):
        why = ("the model declares classes (predict_proba or classes_)" if declares_classes else
               f"target {y.name!r} is not numeric")
        raise RegistrationError(f"--task regression: {why}; did you mean --task classification?")
