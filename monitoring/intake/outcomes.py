"""Parsing and validating a feedback request into outcomes to store.

Exception tree::

    ValueError
     └── FeedbackInvalid   (.errors: per item; HTTP 422, or 413 for too many items)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from monitoring.schema import ModelSchema

@dataclass(frozen=True)
class OutcomeIn:
    """One outcome to store. ``okey`` is the key as posted; exactly one of the key parts is set."""

    okey: str
    class_code: int | None
    value: float | None
    observed_at: float
    request_id: str | None = None
    row_index: int | None = None
    instance_id: str | None = None
    client_request_id: str | None = None


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


def parse_outcomes(outcomes: Any, schema: ModelSchema, max_items: int, now: float) -> list[OutcomeIn]:
    """Validate every item; raise :class:`FeedbackInvalid` listing each bad one."""
    if not isinstance(outcomes, list):
        raise FeedbackInvalid([{"item": None, "message": f"'outcomes' must be an array, got {_type_name(outcomes)}"}])
    if not outcomes:
        raise FeedbackInvalid([{"item": None, "message": "'outcomes' is empty; send at least one"}])
    if len(outcomes) > max_items:
        raise FeedbackInvalid([{"item": None, "message": f"batch has {len(outcomes)} outcomes; at most {max_items}"}],
                              status=413)
    classes = {c: i for i, c in enumerate(schema.classes)}
    class_types = {type(c) for c in schema.classes}
    errors: list[dict[str, Any]] = []
    out: list[OutcomeIn] = []
    for pos, item in enumerate(outcomes):
        try:
            if type(item) is not dict:
                raise ValueError(f"must be an object, got {_type_name(item)}")
            unknown = sorted(set(item) - ALLOWED, key=str)
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(ALLOWED))}")
            if "outcome" not in item:
                raise ValueError("'outcome' is missing")
            v = item["outcome"]
            code = value = None
            if schema.task == "classification":
                if type(v) not in class_types or v not in classes:
                    shown = repr(v)[:60]
                    raise ValueError(f"outcome {shown} is not a class of this model "
                                     f"({', '.join(map(repr, schema.classes))})")
                code = classes[v]
            else:
                if type(v) not in (int, float) or not math.isfinite(float(v)):
                    raise ValueError(f"outcome must be a finite number for a regression model, got {_type_name(v)}")
                value = float(v)
            observed = _time(item["observed_at"], now) if item.get("observed_at") is not None else now
            keys = [k for k in ("request_id", "instance_id", "client_request_id") if k in item]
            if len(keys) != 1:
                raise ValueError("give exactly one of request_id (+ index), instance_id, or client_request_id (+ index)")
            kind = keys[0]
            if kind in ("request_id", "client_request_id"):
                idx = item.get("index")
                if type(idx) is not int or not 0 <= idx < 2**31:
                    raise ValueError(f"'index' (the row in the predicted batch) must be an integer >= 0 with {kind}")
                rid = _id(item[kind], kind, REQUEST_ID_MAX if kind == "request_id" else MAX_ID)
                if kind == "request_id":
                    out.append(OutcomeIn(f"r:{rid}:{idx}", code, value, observed, request_id=rid, row_index=idx))
                else:
                    out.append(OutcomeIn(f"c:{rid}:{idx}", code, value, observed, client_request_id=rid, row_index=idx))
            else:
                if "index" in item:
                    raise ValueError("'index' goes with request_id or client_request_id, not instance_id")
                iid = _id(item["instance_id"], "instance_id")
                out.append(OutcomeIn(f"i:{iid}", code, value, observed, instance_id=iid))
        except ValueError as exc:
            errors.append({"item": pos, "message": str(exc)})
    if errors:
        raise FeedbackInvalid(errors)
    return out


def conflict_errors(conflicts: Sequence[tuple[int, str]]) -> FeedbackInvalid:
    return FeedbackInvalid([{"item": pos, "message": msg} for pos, msg in conflicts], status=409)
