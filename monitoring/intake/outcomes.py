"""Parsing and validating a feedback request into outcomes to store, and Vigil's request ids.

A request id is 32 hex digits: 64 random bits, the batch's row count (24 bits) and a
40-bit check (HMAC-SHA256 under a key the store keeps per model, so every worker and
replica issues and recognises the same ids). An outcome keyed by an id that fails the
check was never issued by this service (a typo), and one whose ``index`` is beyond the
id's rows names no prediction; both are known without waiting for the prediction log.

A classifier's outcome is matched to its class by JSON value (:func:`class_lookup`): the
number ``1`` is the class ``1.0`` (a model trained on a float target), but the string
``"1"`` is not, and ``true`` is never the class ``1``.

Exception tree::

    ValueError
     └── FeedbackInvalid   (.errors: every problem of every item; HTTP 422, or 413 for too many items)
"""

from __future__ import annotations

import hmac
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from monitoring.schema import ModelSchema


class RequestIds:
    """Issues and recognises request ids under ``key`` (bytes).

    >>> ids = RequestIds(b"k")
    >>> rid = ids.issue(3)
    >>> len(rid), ids.rows_of(rid), ids.rows_of("0" * 32)
    (32, 3, None)
    """

    #: The largest row count an id records; a larger batch is recorded as this (index not checked).
    MAX_ROWS = 0xFFFFFF

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("the request-id key must not be empty")
        self._key = key

    def _check(self, head: str) -> str:
        return hmac.digest(self._key, head.encode(), "sha256")[:5].hex()

    def issue(self, rows: int) -> str:
        head = os.urandom(8).hex() + format(min(max(rows, 0), self.MAX_ROWS), "06x")
        return head + self._check(head)

    def rows_of(self, request_id: str) -> int | None:
        """The batch size recorded in one of our ids; None for anything else."""
        if len(request_id) != 32:
            return None
        head = request_id[:22]
        try:
            rows = int(head[16:], 16)
        except ValueError:
            return None
        return rows if hmac.compare_digest(self._check(head), request_id[22:]) else None


@dataclass(frozen=True)
class OutcomeIn:
    """One outcome to store. ``okey`` is the key as posted; exactly one of the key parts is set.

    ``issued_rows``: for a ``request_id`` key, the row count recorded in a verified Vigil
    id (None: not one of ours, or unchecked). ``early``: store it even when no prediction
    has its key yet (the caller's ``allow_early``)."""

    okey: str
    class_code: int | None
    value: float | None
    observed_at: float
    request_id: str | None = None
    row_index: int | None = None
    instance_id: str | None = None
    client_request_id: str | None = None
    issued_rows: int | None = None
    early: bool = False

    @property
    def key_name(self) -> str:
        return {"r": "request_id", "i": "instance_id", "c": "client_request_id"}[self.okey[0]]

    @property
    def key_id(self) -> str:
        return self.request_id or self.instance_id or self.client_request_id or ""


KEY_FIELDS = ("request_id", "index", "instance_id", "client_request_id")
ALLOWED = frozenset((*KEY_FIELDS, "outcome", "observed_at"))
MAX_ID = 256
REQUEST_ID_MAX = 64  # Vigil's request ids are 32 hex characters; the column holds 64
FUTURE_SLACK = 300.0  # observed_at may be a little ahead of our clock


class FeedbackInvalid(ValueError):
    def __init__(self, errors: list[dict[str, Any]], status: int = 422):
        self.errors = errors[:50]
        self.total = len(errors)
        self.status = status
        first = errors[0]
        where = f"outcome {first['item']}: " if first.get("item") is not None else ""
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"{where}{first['message']}{more}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "error_count": self.total, "errors": self.errors}


def _type_name(v: Any) -> str:
    return "null" if v is None else {bool: "boolean", str: "string", int: "integer", float: "number",
                                     list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _time(v: Any, now: float) -> float:
    if type(v) in (int, float):
        t = float(v)
    elif type(v) is str:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("observed_at must be epoch seconds or an ISO-8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        t = dt.timestamp()
    else:
        raise ValueError(f"observed_at must be epoch seconds or an ISO-8601 time, got {_type_name(v)}")
    if not math.isfinite(t) or t <= 0:
        raise ValueError("observed_at must be a positive finite time")
    if t > now + FUTURE_SLACK:
        raise ValueError("observed_at is in the future")
    return t


def _id(v: Any, name: str, max_len: int = MAX_ID) -> str:
    """An id as the store keeps it; a value the store's column cannot hold is a 422 here,
    never a database error (which would read as 503)."""
    if type(v) is int and -2**63 <= v < 2**63:
        return str(v)
    if type(v) is not str or not (0 < len(v) <= max_len):
        raise ValueError(f"{name} must be a non-empty string of at most {max_len} characters (or a 64-bit integer)")
    return v


def _json_kind(v: Any) -> str | None:
    """What JSON would call ``v`` among the types a class can have (None: none of them).
    ``bool`` is tested first: in Python ``True == 1``, in JSON they differ."""
    if type(v) is bool:
        return "boolean"
    if type(v) in (int, float):
        return "number"
    return "string" if type(v) is str else None


def class_lookup(classes: Sequence[Any]) -> dict[tuple[str, Any], int]:
    """Class code by (JSON kind, value): a number matches a numeric class by value (``1``,
    ``1.0`` and a class stored as ``1.0`` are one class, as they are one number in JSON);
    a string matches only a string class and a boolean only a boolean one."""
    return {(_json_kind(c) or type(c).__name__, c): i for i, c in enumerate(classes)}


def _outcome(item: dict, schema: ModelSchema, classes: dict, problems: list[str]):
    """(class_code, value) of an item's outcome; problems appended."""
    if "outcome" not in item:
        problems.append("'outcome' is missing")
        return None, None
    v = item["outcome"]
    if schema.task == "classification":
        kind = _json_kind(v)
        code = classes.get((kind, v)) if kind is not None else None
        if code is None:
            hint = ""
            if kind == "string" and any(k == "number" for k, _ in classes):
                hint = "; the classes are numbers: send the outcome as a JSON number"
            problems.append(f"outcome {repr(v)[:60]} is not a class of this model "
                            f"({', '.join(map(repr, schema.classes))}){hint}")
            return None, None
        return code, None
    if type(v) not in (int, float) or not math.isfinite(float(v)):
        problems.append(f"outcome must be a finite number for a regression model, got {_type_name(v)}")
        return None, None
    return None, float(v)


def _key(item: dict, problems: list[str]) -> tuple[str, str, int | None] | None:
    """(kind, id, index) of an item's key; problems appended."""
    keys = [k for k in ("request_id", "instance_id", "client_request_id") if k in item]
    if len(keys) != 1:
        problems.append("give exactly one of request_id (+ index), instance_id, or client_request_id (+ index)")
        return None
    kind = keys[0]
    out = None
    try:
        out = _id(item[kind], kind, REQUEST_ID_MAX if kind == "request_id" else MAX_ID)
    except ValueError as exc:
        problems.append(str(exc))
    if kind == "instance_id":
        if "index" in item:
            problems.append("'index' goes with request_id or client_request_id, not instance_id")
            return None
        return (kind, out, None) if out is not None else None
    idx = item.get("index")
    if type(idx) is not int or not 0 <= idx < 2**31:
        problems.append(f"'index' (the row in the predicted batch) must be an integer >= 0 with {kind}")
        return None
    return (kind, out, idx) if out is not None else None


def parse_outcomes(outcomes: Any, schema: ModelSchema, max_items: int, now: float, *,
                   request_ids: RequestIds | None = None, allow_early: bool = False) -> list[OutcomeIn]:
    """Validate every item; raise :class:`FeedbackInvalid` listing every problem of every
    bad item. ``request_ids`` checks ``request_id`` keys (see :class:`RequestIds`);
    ``allow_early`` marks every outcome to be kept even if no prediction has its key yet."""
    if not isinstance(outcomes, list):
        raise FeedbackInvalid([{"item": None, "message": f"'outcomes' must be an array, got {_type_name(outcomes)}"}])
    if not outcomes:
        raise FeedbackInvalid([{"item": None, "message": "'outcomes' is empty; send at least one"}])
    if len(outcomes) > max_items:
        raise FeedbackInvalid([{"item": None, "message": f"batch has {len(outcomes)} outcomes; at most {max_items}"}],
                              status=413)
    classes = class_lookup(schema.classes)
    errors: list[dict[str, Any]] = []
    out: list[OutcomeIn] = []
    for pos, item in enumerate(outcomes):
        if type(item) is not dict:
            errors.append({"item": pos, "message": f"must be an object, got {_type_name(item)}"})
            continue
        problems: list[str] = []
        unknown = sorted(set(item) - ALLOWED, key=str)
        if unknown:
            problems.append(f"unknown field(s) {', '.join(repr(u)[:60] for u in unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''}; allowed: {', '.join(sorted(ALLOWED))}")
        code, value = _outcome(item, schema, classes, problems)
        observed = now
        if item.get("observed_at") is not None:
            try:
                observed = _time(item["observed_at"], now)
            except ValueError as exc:
                problems.append(str(exc))
        key = _key(item, problems)
        if problems:
            errors += [{"item": pos, "message": m} for m in problems]
            continue
        kind, kid, idx = key
        if kind == "request_id":
            rows = request_ids.rows_of(kid) if request_ids is not None else None
            out.append(OutcomeIn(f"r:{kid}:{idx}", code, value, observed, request_id=kid, row_index=idx,
                                 issued_rows=rows, early=allow_early))
        elif kind == "client_request_id":
            out.append(OutcomeIn(f"c:{kid}:{idx}", code, value, observed, client_request_id=kid, row_index=idx,
                                 early=allow_early))
        else:
            out.append(OutcomeIn(f"i:{kid}", code, value, observed, instance_id=kid, early=allow_early))
    if errors:
        raise FeedbackInvalid(errors)
    return out


def parse_okey(okey: str) -> OutcomeIn | None:
    """The key parts of a stored ``okey`` (value fields empty); None if it is malformed."""
    kind, _, rest = okey.partition(":")
    try:
        if kind == "r":
            rid, _, idx = rest.rpartition(":")
            return OutcomeIn(okey, None, None, 0.0, request_id=rid, row_index=int(idx))
        if kind == "i":
            return OutcomeIn(okey, None, None, 0.0, instance_id=rest)
        if kind == "c":
            cid, _, idx = rest.rpartition(":")
            return OutcomeIn(okey, None, None, 0.0, client_request_id=cid, row_index=int(idx))
    except ValueError:
        return None
    return None


def conflict_errors(conflicts: Sequence[tuple[int, str]]) -> FeedbackInvalid:
    return FeedbackInvalid([{"item": pos, "message": msg} for pos, msg in conflicts], status=409)
