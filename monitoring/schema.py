"""Feature schema of a served model: what each input column is and what it may hold.

The schema is inferred from the reference data at registration (see
:func:`infer_feature_specs`), refined by probing the model (nullability, unseen
categories, float width), stored with the model, and used by the request validator and
by the monitors (which category code means what).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"
Kind = Literal["numeric", "categorical"]
Task = Literal["classification", "regression"]
TASKS = ("classification", "regression")

#: A feature whose reference data holds more distinct values than this keeps no
#: category list: it is treated as free text the model must accept as unseen.
MAX_CATEGORIES = 10_000

Category = str | int | bool


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature.

    ``dtype`` is one of ``float``, ``int`` (numeric) or ``str``, ``int``, ``bool``
    (categorical values as JSON carries them). ``drift_exempt`` says why the feature is
    not tested for drift (``"id-like"``, ``"date-like"``: a value per row, so every live
    window differs from the reference by construction); None: it is tested. An exempt
    feature is still validated, passed to the model and counted for missing values.
    """

    name: str
    kind: Kind
    dtype: str
    nullable: bool = False
    categories: tuple[Category, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    accepts_unseen: bool = False
    drift_exempt: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"kind must be one of {NUMERIC!r}, {CATEGORICAL!r}; got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"] = list(self.categories)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        return cls(**{**d, "categories": tuple(d.get("categories", ()))})


@dataclass(frozen=True)
class ModelSchema:
    """Everything about a model's contract that serving and monitoring need."""

    features: tuple[FeatureSpec, ...]
    task: Task
    classes: tuple[Category, ...] = ()
    target: str | None = None
    float_dtype: str = "float64"
    input_format: Literal["frame", "array"] = "array"
    #: largest magnitude the model was seen to answer finitely (None: the float type's maximum)
    max_abs: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}; got {self.task!r}")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.float_dtype not in ("float32", "float64"):
            raise ValueError(f"float_dtype must be float32 or float64; got {self.float_dtype!r}")

    @property
    def value_limit(self) -> float:
        """Largest numeric magnitude accepted: the model's float type, or less if probed so."""
        limit = float_limit(self.float_dtype)
        return min(limit, self.max_abs) if self.max_abs is not None else limit

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == NUMERIC)

    @property
    def categorical(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == CATEGORICAL)

    def with_features(self, features: Sequence[FeatureSpec]) -> "ModelSchema":
        return replace(self, features=tuple(features))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [f.to_dict() for f in self.features],
            "task": self.task,
            "classes": list(self.classes),
            "target": self.target,
            "float_dtype": self.float_dtype,
            "max_abs": self.max_abs,
            "input_format": self.input_format,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSchema":
        return cls(
            features=tuple(FeatureSpec.from_dict(f) for f in d["features"]),
            task=d["task"],
            classes=tuple(d.get("classes", ())),
            target=d.get("target"),
            float_dtype=d.get("float_dtype", "float64"),
            max_abs=d.get("max_abs"),
            input_format=d.get("input_format", "array"),
            extra=dict(d.get("extra", {})),
        )

    def json_schema(self, id_field: str | None = None) -> dict[str, Any]:
        """JSON Schema of one instance (published in the OpenAPI spec)."""
        props: dict[str, Any] = {}
        for f in self.features:
            if f.kind == NUMERIC:
                s: dict[str, Any] = {"type": "integer" if f.dtype == "int" else "number"}
                limit = self.value_limit
                if math.isfinite(limit):
                    s["minimum"], s["maximum"] = -limit, limit
                if f.minimum is not None and f.maximum is not None:
                    s["description"] = f"reference range [{f.minimum:g}, {f.maximum:g}]; outside is monitored, not rejected"
            else:
                jtype = {"str": "string", "int": "integer", "bool": "boolean"}.get(f.dtype, "string")
                s = {"type": jtype}
                if f.categories and not f.accepts_unseen:
                    s["enum"] = list(f.categories)
            if f.nullable:
                s = {"anyOf": [s, {"type": "null"}]}
            props[f.name] = s
        required = list(self.names)
        if id_field:
            props[id_field] = {"type": ["string", "integer"], "description": "caller's id for this instance; not passed to the model"}
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def _jsonable_category(v: Any) -> Category:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    return str(v)


def infer_feature_specs(frame: "Any", categorical_hint: Sequence[str] = ()) -> list[FeatureSpec]:
    """Infer a :class:`FeatureSpec` per column of a pandas DataFrame.

    Numeric (non-bool) dtypes become numeric features with the observed range;
    everything else (object, string, category, bool) becomes categorical with its
    observed categories. ``nullable`` is what the data shows; the registry widens it
    when the model is seen to accept missing values.
    """
    import pandas as pd

    specs = []
    for name in frame.columns:
        col = frame[name]
        nullable = bool(col.isna().any())
        is_bool = pd.api.types.is_bool_dtype(col.dtype)
        if pd.api.types.is_numeric_dtype(col.dtype) and not is_bool and name not in categorical_hint:
            values = col.to_numpy(dtype="float64", na_value=np.nan)
            finite = values[np.isfinite(values)]
            dtype = "int" if pd.api.types.is_integer_dtype(col.dtype) else "float"
            specs.append(FeatureSpec(
                name=str(name), kind=NUMERIC, dtype=dtype, nullable=nullable,
                minimum=float(finite.min()) if finite.size else None,
                maximum=float(finite.max()) if finite.size else None,
            ))
        else:
            uniq = col.dropna().unique()
            cats = sorted({_jsonable_category(v) for v in uniq}, key=lambda c: (type(c).__name__, c))
            types = {type(c) for c in cats}
            dtype = "bool" if is_bool or types == {bool} else "int" if types == {int} else "str"
            if dtype == "str":
                cats = sorted({str(c) for c in cats})
            specs.append(FeatureSpec(
                name=str(name), kind=CATEGORICAL, dtype=dtype, nullable=nullable,
                categories=tuple(cats) if len(cats) <= MAX_CATEGORIES else (),
                accepts_unseen=len(cats) > MAX_CATEGORIES,
            ))
    return specs


def float_limit(float_dtype: str) -> float:
    """Largest finite magnitude the model's float type holds."""
    return float(np.finfo(np.dtype(float_dtype)).max) if float_dtype else math.inf
