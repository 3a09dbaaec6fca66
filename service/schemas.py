"""HTTP request and response shapes: the JSON schemas ``/docs.json`` publishes for
``/predict`` and ``/feedback`` (built from the model's feature schema) and the pydantic
bodies of the admin actions."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitoring.schema import ModelSchema

#: Longest caller-supplied ``X-Request-ID``.
MAX_CLIENT_ID = 256
#: Longest silence window an operator may set (90 days).
MAX_SILENCE_SECONDS = 90 * 86400


class PredictResponse(BaseModel):
    request_id: str = Field(description="Vigil's id for this request; post outcomes with it and the row index.")
    model: str = Field(description="Tag of the model that answered.")
    predictions: list[Any]
    classes: list[Any] | None = Field(None, description="Class order of `probabilities` (classifiers).")
    probabilities: list[list[float]] | None = Field(None, description="Per-row class probabilities.")


#: Most items a feedback response lists under ``errors`` (the counts are always complete).
MAX_LISTED = 50
ALLOW_EARLY = ("Keep outcomes whose key names no prediction yet (a caller id not seen yet, an id "
               "Vigil did not issue) until one does, instead of reporting them as unknown.")


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="Outcomes newly stored (committed), matched or not yet.")
    duplicate: int = Field(description="Outcomes already stored with the same value, under any key of the "
                                       "same prediction (re-sends).")
    pending: int = Field(description="Of the accepted, those whose prediction is not logged yet (joined later).")
    unknown: int = Field(0, description="Outcomes not kept: their key names no prediction (see errors).")
    replaced: int = Field(0, description="Provisional outcomes (posted before their prediction was made) "
                                         "replaced by these.")
    errors: list[dict[str, Any]] = Field(default_factory=list, description=(
        "Per unknown outcome: its position in the batch (item) and why (message)."))


def instances_schema(schema: ModelSchema, max_rows: int, instance_id_field: str | None,
                     ranges: bool = True) -> dict[str, Any]:
    """The ``instances`` schema; ``ranges=False`` leaves out each feature's reference range
    (the real minimum and maximum of the training data: kept private when the monitoring
    views are protected)."""
    items = schema.json_schema(instance_id_field)
    if not ranges:
        for prop in items["properties"].values():
            for s in (prop, *prop.get("anyOf", ())):
                if str(s.get("description", "")).startswith("reference range"):
                    s["description"] = "values outside the reference range are monitored, not rejected"
    return {"type": "array", "minItems": 1, "maxItems": max_rows, "items": items,
            "description": "Rows to predict, one object per row with every feature of the model."}


def outcomes_schema(schema: ModelSchema, max_items: int) -> dict[str, Any]:
    outcome = ({"enum": list(schema.classes), "description": "the true class"} if schema.task == "classification"
               else {"type": "number", "description": "the true value"})
    item = {
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "description": "request_id returned by /predict"},
            "index": {"type": "integer", "minimum": 0, "description": "row in that request's batch"},
            "instance_id": {"type": ["string", "integer"], "description": "your per-instance id (VIGIL_INSTANCE_ID_FIELD)"},
            "client_request_id": {"type": "string", "description": "the X-Request-ID you sent with /predict"},
            "outcome": outcome,
            "observed_at": {"type": ["number", "string"], "description": "epoch seconds or ISO-8601; default: now"},
        },
        "required": ["outcome"],
        "additionalProperties": False,
    }
    return {"type": "array", "minItems": 1, "maxItems": max_items, "items": item}


_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn"))  # controls, format (bidi, zero-width), no glyph


def display_text(v: str, limit: int) -> str | None:
    r"""Free text (a silence's reason, who acted) as it is stored and served: control and
    invisible formatting characters (NUL, bidi overrides, zero-width joiners) removed,
    markup brackets removed, whitespace runs made one space, cut to ``limit``; None if
    nothing is left. Pages that show it still escape it; this keeps the store clean for
    those that forget, and for terminals and logs.

    >>> display_text("ok\u202e <b>evil</b>\x00\n done", 100)
    'ok bevil/b done'
    """
    kept = "".join(" " if ch.isspace() else ch for ch in v
                   if ch.isspace() or (unicodedata.category(ch) not in _INVISIBLE and ch not in "<>"))
    out = re.sub(r" +", " ", kept).strip()[:limit].rstrip()
    return out or None


def _cut(limit: int):
    """A free-text field (reason, by): :func:`display_text` at what its column holds."""
    def cut(v: str | None) -> str | None:
        return display_text(v, limit) if isinstance(v, str) else v
    return cut


def _plain_instance(v: str | None) -> str | None:
    if v is not None and any(unicodedata.category(ch) in _INVISIBLE for ch in v):
        raise ValueError("must not contain control or invisible formatting characters")
    return v


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SilenceBody(_Action):
    rule: str = Field(description="a rule name, or '*' for every rule")
    seconds: float = Field(gt=0, le=MAX_SILENCE_SECONDS, strict=True)
    instance: str | None = Field(None, max_length=300)
    reason: str | None = None
    by: str | None = None

    _instance = field_validator("instance")(_plain_instance)
    _reason = field_validator("reason")(_cut(1000))
    _by = field_validator("by")(_cut(200))


class AckBody(_Action):
    rule: str
    instance: str | None = Field(None, max_length=300)
    by: str | None = None

    _instance = field_validator("instance")(_plain_instance)
    _by = field_validator("by")(_cut(200))


class RebaselineBody(_Action):
    window_id: int = Field(ge=0, lt=2 ** 63, strict=True)
    by: str | None = None

    _by = field_validator("by")(_cut(200))
