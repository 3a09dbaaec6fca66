"""Request validation: JSON instances in, one columnar batch out.

The validator runs on the request path. It checks every instance against the
:class:`~monitoring.schema.ModelSchema` and builds, in one pass, the columnar arrays that
both the model adapter and the monitors consume (so the monitors never re-parse JSON).

Exception tree::

    ValueError
     └── ValidationFailed      (.errors: tuple[FieldError, ...]; HTTP 422, or 413 for size)
"""

from __future__ import annotations

import math
from itertools import chain
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from monitoring import names as N
from monitoring.schema import ModelSchema, float_limit

#: How many errors one response lists at most (the count is always complete).
MAX_REPORTED_ERRORS = 20
MISSING_CODE = -1
UNSEEN_CODE = -2

_NUMBER_TYPES = frozenset((int, float))  # bool is deliberately not a number here
_ABSENT = object()  # a feature missing from a row (reported once, as missing)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one row (``row`` is None for batch-level problems)."""

    row: int | None
    feature: str | None
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "feature": self.feature, "kind": self.kind, "message": self.message}


class ValidationFailed(ValueError):
    """The batch was rejected; ``errors`` names each row and feature at fault."""

    def __init__(self, errors: Sequence[FieldError], total: int | None = None, status: int = 422):
        self.errors = tuple(errors[:MAX_REPORTED_ERRORS])
        self.total = total if total is not None else len(errors)
        self.status = status
        first = self.errors[0]
        where = []
        if first.row is not None:
            where.append(f"row {first.row}")
        if first.feature is not None:
            where.append(f"feature {first.feature!r}")
        prefix = ", ".join(where)
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"{prefix + ': ' if prefix else ''}{first.message}{more}")

    @property
    def kind(self) -> str:
        """The first error's kind: the metric label for this rejection."""
        return self.errors[0].kind

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "error_count": self.total, "errors": [e.to_dict() for e in self.errors]}


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    """A validated request, columnar.

    ``numeric`` is ``(rows, n_numeric)`` float64 with NaN for missing values;
    ``codes`` is ``(rows, n_categorical)`` int32 category codes (index into the
    feature's categories; -1 missing, -2 unseen). ``categorical`` keeps the original
    values (NaN for missing) for models that take a DataFrame.
    """

    n_rows: int
    numeric: np.ndarray
    codes: np.ndarray
    categorical: dict[str, np.ndarray]
    instance_ids: tuple[str | int | None, ...] | None


def _type_name(v: Any) -> str:
    return "null" if v is None else {bool: "boolean", str: "string", int: "integer", float: "number",
                                     list: "array", dict: "object"}.get(type(v), type(v).__name__)


class Validator:
    """Validate ``instances`` against a schema.

    Parameters
    ----------
    schema : ModelSchema
    max_rows : int
        Largest batch accepted.
    id_field : str, optional
        Name of an optional per-instance id (kept, never passed to the model).

    Examples
    --------
    >>> from monitoring.schema import FeatureSpec, ModelSchema
    >>> s = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="regression")
    >>> Validator(s, max_rows=10).validate([{"x": 1.5}]).numeric.tolist()
    [[1.5]]
    """

    def __init__(self, schema: ModelSchema, max_rows: int, id_field: str | None = None):
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1; got {max_rows}")
        if id_field is not None and id_field in schema.names:
            raise ValueError(f"id_field {id_field!r} is also a feature name")
        self.schema = schema
        self.max_rows = max_rows
        self.id_field = id_field
        self._features = frozenset(schema.names)
        self._numeric = schema.numeric
        self._categorical = schema.categorical
        self._limit = schema.value_limit
        self._numeric_names = [f.name for f in self._numeric]
        self._int_cols = np.array([j for j, f in enumerate(self._numeric) if f.dtype == "int"], dtype=np.int64)
        self._cat_index = [{c: i for i, c in enumerate(f.categories)} for f in self._categorical]
        self._cat_type = [{"str": str, "int": int, "bool": bool}.get(f.dtype, str) for f in self._categorical]

    def _overflow_message(self, v: float | None) -> str:
        shown = "number" if v is None else f"{v:g}"
        if self._limit < float_limit(self.schema.float_dtype):
            return f"{shown} exceeds the largest magnitude the model takes ({self._limit:g})"
        return f"{shown} overflows the model's {self.schema.float_dtype}"

    # -- structure -----------------------------------------------------------------
    def _check_structure(self, instances: Any) -> tuple[list[FieldError], int]:
        """(errors, how many more were counted but not built) for the batch's shape and keys.
        Problems with the batch itself come alone (nothing else can be checked); problems
        with rows (not an object, missing or unknown features) are listed and the values
        that are there are still checked, so that one missing feature hides nothing."""
        uncounted = 0
        if not isinstance(instances, list):
            return [FieldError(None, None, N.ERR_MALFORMED,
                               f"'instances' must be an array of objects, got {_type_name(instances)}")], 0
        n = len(instances)
        if n == 0:
            return [FieldError(None, None, N.ERR_EMPTY_BATCH, "'instances' is empty; send at least one row")], 0
        if n > self.max_rows:
            return [FieldError(None, None, N.ERR_TOO_MANY_ROWS,
                               f"batch has {n} rows; at most {self.max_rows} are accepted")], 0
        errors: list[FieldError] = []
        features, idf = self._features, self.id_field
        for i, row in enumerate(instances):
            if type(row) is not dict:
                errors.append(FieldError(i, None, N.ERR_MALFORMED, f"instance must be an object, got {_type_name(row)}"))
                continue
            keys = row.keys()
            if keys == features:
                continue
            present = set(keys)
            if idf is not None:
                present.discard(idf)
            missing = self._features - present
            unknown = present - self._features
            if len(errors) >= MAX_REPORTED_ERRORS:  # enough to report: count the rest cheaply
                uncounted += len(missing) + len(unknown)
                continue
            for name in sorted(missing):
                errors.append(FieldError(i, name, N.ERR_MISSING_FEATURE, "feature is missing"))
            for name in sorted(unknown, key=str)[:MAX_REPORTED_ERRORS]:
                errors.append(FieldError(i, str(name)[:100], N.ERR_UNKNOWN_FEATURE,
                                         "unknown feature; expected only the model's features"
                                         + (f" and {idf!r}" if idf else "")))
            uncounted += max(0, len(unknown) - MAX_REPORTED_ERRORS)
        return errors, uncounted

    # -- numeric -------------------------------------------------------------------
    def _numeric_column(self, instances: list[dict], spec, errors: list[FieldError]) -> np.ndarray:
        name = spec.name
        col = [r.get(name, _ABSENT) for r in instances]
        kinds = set(map(type, col))
        if kinds <= {float, int}:
            try:
                arr = np.array(col, dtype=np.float64)
            except OverflowError:
                arr = None
        else:
            arr = None
        if arr is None:  # slow path: find the culprits row by row
            arr = np.empty(len(col), dtype=np.float64)
            for i, v in enumerate(col):
                t = type(v)
                if v is None or v is _ABSENT:
                    arr[i] = math.nan
                elif t is int or t is float:
                    try:
                        arr[i] = float(v)
                    except OverflowError:
                        errors.append(FieldError(i, name, N.ERR_OVERFLOW, self._overflow_message(None)))
                        arr[i] = 0.0
                else:
                    errors.append(FieldError(i, name, N.ERR_WRONG_TYPE,
                                             f"expected a number, got {_type_name(v)}"))
                    arr[i] = 0.0
        finite = np.isfinite(arr)
        if not finite.all():
            nan = np.isnan(arr)
            if nan.any() and not spec.nullable:
                for i in np.flatnonzero(nan):
                    if col[i] is _ABSENT:  # reported as missing already
                        continue
                    errors.append(FieldError(int(i), name, N.ERR_NULL, "missing value (null/NaN) is not allowed for this feature"))
            for i in np.flatnonzero(np.isinf(arr)):
                errors.append(FieldError(int(i), name, N.ERR_NON_FINITE, "infinite values are not accepted"))
        big = np.abs(arr) > self._limit
        if big.any():
            for i in np.flatnonzero(big & ~np.isinf(arr)):
                errors.append(FieldError(int(i), name, N.ERR_OVERFLOW, self._overflow_message(arr[i])))
        if spec.dtype == "int":
            frac = finite & (arr != np.floor(arr))
            for i in np.flatnonzero(frac):
                errors.append(FieldError(int(i), name, N.ERR_WRONG_TYPE, f"expected an integer, got {arr[i]:g}"))
        return arr

    def _numeric_fast(self, instances: list[dict]) -> np.ndarray | None:
        """The whole numeric block in one pass when every value is a plain finite number
        within the model's float range (the common case); None sends the batch through
        the per-column path, which names every problem."""
        names = self._numeric_names
        if not names:
            return np.empty((len(instances), 0), dtype=np.float64)
        rows = [[r[nm] for nm in names] for r in instances]
        if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
            return None
        try:
            arr = np.array(rows, dtype=np.float64)
        except OverflowError:
            return None
        if not np.isfinite(arr).all() or (np.abs(arr) > self._limit).any():
            return None
        if self._int_cols.size and (arr[:, self._int_cols] != np.floor(arr[:, self._int_cols])).any():
            return None
        return arr

    # -- categorical -----------------------------------------------------------------
    def _categorical_column(self, instances: list[dict], j: int, errors: list[FieldError]):
        spec = self._categorical[j]
        index, want = self._cat_index[j], self._cat_type[j]
        name = spec.name
        n = len(instances)
        codes = np.empty(n, dtype=np.int32)
        values = np.empty(n, dtype=object)
        for i, r in enumerate(instances):
            v = r.get(name, _ABSENT)
            if v is _ABSENT:  # reported as missing already
                codes[i], values[i] = MISSING_CODE, np.nan
                continue
            if v is None:
                if not spec.nullable:
                    errors.append(FieldError(i, name, N.ERR_NULL, "missing value (null) is not allowed for this feature"))
                codes[i], values[i] = MISSING_CODE, np.nan
                continue
            if type(v) is not want:
                errors.append(FieldError(i, name, N.ERR_WRONG_TYPE,
                                         f"expected {_type_name(want())} category, got {_type_name(v)}"))
                codes[i], values[i] = MISSING_CODE, np.nan
                continue
            code = index.get(v)
            if code is None:
                if not spec.accepts_unseen:
                    shown = repr(v)[:60]
                    errors.append(FieldError(i, name, N.ERR_UNSEEN_CATEGORY,
                                             f"category {shown} was not seen in the reference data and the model cannot take it"))
                code = UNSEEN_CODE
            codes[i], values[i] = code, v
        return codes, values

    def _instance_ids(self, instances: list[dict], errors: list[FieldError]):
        idf = self.id_field
        if idf is None:
            return None
        ids = []
        seen: set = set()
        for i, r in enumerate(instances):
            v = r.get(idf)
            if v is not None and (type(v) not in (str, int) or (type(v) is str and not (0 < len(v) <= 256))
                                  or (type(v) is int and not -2**63 <= v < 2**63)):
                errors.append(FieldError(i, idf, N.ERR_BAD_ID,
                                         "instance id must be a non-empty string (<= 256 chars) or a 64-bit integer"))
            elif v is not None and v in seen:
                errors.append(FieldError(i, idf, N.ERR_BAD_ID, "instance id repeats an earlier row of this batch"))
            elif v is not None:
                seen.add(v)
            ids.append(v)
        return tuple(ids)

    def validate(self, instances: Any) -> ValidatedBatch:
        """Return a :class:`ValidatedBatch` or raise :class:`ValidationFailed`."""
        errors, uncounted = self._check_structure(instances)
        if errors and errors[0].row is None:  # the batch itself: empty, too large, not an array
            status = 413 if errors[0].kind == N.ERR_TOO_MANY_ROWS else 422
            raise ValidationFailed(errors, total=len(errors) + uncounted, status=status)
        n = len(instances)
        if errors:  # rows with structural problems: check what values they have, objects only
            instances = [r if type(r) is dict else {} for r in instances]
        numeric = None if errors else self._numeric_fast(instances)
        if numeric is None:  # something to report (or a null to allow): column by column
            numeric = np.empty((n, len(self._numeric)), dtype=np.float64)
            for j, spec in enumerate(self._numeric):
                numeric[:, j] = self._numeric_column(instances, spec, errors)
        codes = np.empty((n, len(self._categorical)), dtype=np.int32)
        categorical: dict[str, np.ndarray] = {}
        for j, spec in enumerate(self._categorical):
            codes[:, j], categorical[spec.name] = self._categorical_column(instances, j, errors)
        ids = self._instance_ids(instances, errors)
        if errors:
            errors.sort(key=lambda e: (e.row if e.row is not None else -1))
            raise ValidationFailed(errors, total=len(errors) + uncounted)
        return ValidatedBatch(n, numeric, codes, categorical, ids)
