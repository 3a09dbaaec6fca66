"""Columns that are identifiers or dates: found at registration, exempt from drift.

A customer id, an order number, a date: the model may take them (they are still
validated and passed to it), but as monitored features they are nonsense. Every live
window holds ids and dates the reference never had, so a drift test on them reports
an effect near 1 and an unseen rate near 1 forever, telling nothing about the data.
Registration therefore finds them, says so in one warning each, and marks them
``drift_exempt`` in the schema (see :class:`monitoring.schema.FeatureSpec`); the user
can keep one tested anyway (``vigil register --monitor COLUMN``).

The rules, on the full data's category counts and the bounded reference sample:

- **date-like**: a datetime column, or a text column whose non-missing sample values
  are at least :data:`DATE_SHARE` dates or timestamps (``2024-01-31``,
  ``31/01/2024 08:00``, ``2024-01-31T08:00:00Z``), however few distinct values it has;
- **id-like**: a text or integer category with at least :data:`ID_LIKE_MIN_DISTINCT`
  distinct values and at least :data:`ID_LIKE_DISTINCT_SHARE` of one per row (or too many
  to list); or a numeric column of whole numbers (an integer column with a gap reads as
  float) whose sample values (at least :data:`ID_LIKE_MIN_DISTINCT`) are all distinct and
  which is named like an id (``id``, ``customer_id``, ``orderId``, ``uuid``, ``key``) or
  spans no more than two values per row (a row number or a sequence).

An integer column of distinct values with a wide range (amounts in cents, say) is not
an id by these rules: a measurement whose every value differs is still a measurement.
No I/O; the caller's sample is only read.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from typing import Sequence

import pandas as pd

from monitoring.schema import CATEGORICAL, MAX_CATEGORIES, NUMERIC, FeatureSpec

from .errors import RegistrationError

ID_LIKE = "id-like"
DATE_LIKE = "date-like"
#: A category with at least this many distinct values, and at least this share of one
#: per row, is an identifier rather than a category.
ID_LIKE_MIN_DISTINCT = 50
ID_LIKE_DISTINCT_SHARE = 0.5
#: Share of a text column's non-missing values that must read as dates.
DATE_SHARE = 0.95

_DATE = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
                   r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key)$|[a-z0-9]Id$|ID$", re.IGNORECASE)


def _is_date_column(col: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return True
    values = col.dropna()
    if values.empty or pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return False
    text = values.astype(str)
    return bool(text.str.match(_DATE).mean() >= DATE_SHARE)


def _id_evidence(f: FeatureSpec, col: pd.Series, n_rows: int) -> str | None:
    """Why ``f`` looks like an identifier (None: it does not)."""
    if f.kind == CATEGORICAL and f.dtype in ("str", "int"):
        if f.accepts_unseen and not f.categories:
            return f"more than {MAX_CATEGORIES:,} distinct values in {n_rows:,} rows"
        distinct = len(f.categories)
        if distinct >= ID_LIKE_MIN_DISTINCT and distinct >= ID_LIKE_DISTINCT_SHARE * n_rows:
            return f"{distinct:,} distinct values in {n_rows:,} rows"
        return None
    if f.kind != NUMERIC or f.minimum is None or f.maximum is None:
        return None
    values = col.dropna()
    if len(values) < ID_LIKE_MIN_DISTINCT or values.nunique() != len(values):
        return None
    if f.dtype != "int" and not bool((values == values.round()).all()):
        return None  # a float column holds ids only as whole numbers (an int column with a gap reads as float)
    if _ID_NAME.search(f.name):
        return "every sampled value distinct, and named like an id"
    if f.maximum - f.minimum + 1 <= 2 * n_rows:
        return f"every sampled value distinct, spanning {f.minimum:,.0f} to {f.maximum:,.0f} in {n_rows:,} rows"
    return None


def find_roles(features: Sequence[FeatureSpec], sample: pd.DataFrame, n_rows: int) -> dict[str, tuple[str, str]]:
    """``{feature: (role, evidence)}`` for the features that are ids or dates."""
    roles = {}
    for f in features:
        col = sample[f.name]
        if f.kind == CATEGORICAL and _is_date_column(col):
            distinct = f"{len(f.categories):,}" if f.categories else f"more than {MAX_CATEGORIES:,}"
            roles[f.name] = (DATE_LIKE, f"its values are dates; {distinct} distinct values in {n_rows:,} rows")
            continue
        evidence = _id_evidence(f, col, n_rows)
        if evidence is not None:
            roles[f.name] = (ID_LIKE, evidence)
    return roles


def exempt_ids_and_dates(features: Sequence[FeatureSpec], sample: pd.DataFrame, n_rows: int,
                         keep: Sequence[str] = ()) -> tuple[list[FeatureSpec], dict[str, str], list[str]]:
    """Mark id- and date-like features ``drift_exempt`` (except those in ``keep``).

    Returns (features, ``{feature: role}`` of every id- or date-like one, kept or not,
    one warning per such feature). Raises :class:`RegistrationError` for a ``keep`` name
    that is not a feature.
    """
    check_names(keep, [f.name for f in features], "--monitor")
    roles = find_roles(features, sample, n_rows)
    out, notes = [], []
    for f in features:
        if f.name not in roles:
            out.append(f)
            continue
        role, evidence = roles[f.name]
        what = "a date" if role == DATE_LIKE else "an id"
        if f.name in keep:
            notes.append(f"column {f.name!r} looks like {what} ({evidence}); tested for drift as asked (--monitor), "
                         "although most live values will differ from the reference's")
            out.append(f)
        else:
            notes.append(f"column {f.name!r} looks like {what} ({evidence}): not tested for drift, since every "
                         f"live window would differ from the reference; still validated and passed to the model "
                         f"(--monitor {f.name} to test it anyway; better, derive features from it)")
            out.append(replace(f, drift_exempt=role))
    return out, {name: role for name, (role, _) in roles.items()}, notes


def check_names(given: Sequence[str], names: Sequence[str], option: str, target: str | None = None) -> None:
    """Every name in ``given`` must be a feature: :class:`RegistrationError` with a
    did-you-mean for the first that is not."""
    for g in given:
        if g in names:
            continue
        if target is not None and g == target:
            raise RegistrationError(f"{option} {g}: {g!r} is the target column, not a feature")
        close = difflib.get_close_matches(g, list(names), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"features are {', '.join(list(names)[:20])}"
        raise RegistrationError(f"{option} {g}: no such feature; {hint}")
