"""HTTP request and response shapes: the JSON schemas ``/docs.json`` publishes for
``/predict`` and ``/feedback`` (built from the model's feature schema) and the pydantic
bodies of the admin actions."""

from __future__ import annotations

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


def instances_schema(schema: ModelSchema, max_rows: int, instance_id_field: str | None) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": max_rows,
            "items": schema.json_schema(instance_id_field),
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


def _cut(limit: int):
    """A free-text field (reason, by) cut to what its column holds."""
    def cut(v: str | None) -> str | None:
        return v[:limit] if isinstance(v, str) else v
    return cut


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SilenceBody(_Action):
    rule: str = Field(description="a rule name, or '*' for every rule")
    seconds: float = Field(gt=0, le=MAX_SILENCE_SECONDS, strict=True)
    instance: str | None = Field(None, max_length=300)
    reason: str | None = None
    by: str | None = None

    _reason = field_validator("reason")(_cut(1000))
    _by = field_validator("by")(_cut(200))


class AckBody(_Action):
    rule: str
    instance: str | None = Field(None, max_length=300)
    by: str | None = None

    _by = field_validator("by")(_cut(200))


class RebaselineBody(_Action):
    window_id: int = Field(ge=0, lt=2 ** 63, strict=True)
    by: str | None = None

    _by = field_validator("by")(_cut(200))
