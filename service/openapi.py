"""The OpenAPI description of the endpoints BentoML does not describe: the mounted
``/monitoring``, ``/admin`` and ``/dashboard`` apps (plain Starlette apps; BentoML's spec
only describes its own APIs and mounted FastAPI apps).

:func:`merge` adds :func:`mounted_paths` to the spec BentoML serves at ``/docs.json``
(:class:`~service.dashboard.DocsLink` calls it on the way out), so Swagger UI at ``/``, code
generators and schemathesis see every endpoint. The paths are written here, beside the
routes' own bounds (imported, not repeated); a test checks that every mounted route is
described and that the parameters' bounds match what the handlers accept.
"""

from __future__ import annotations

from typing import Any

from .dashboard import MAX_SAMPLE_ROWS
from .mounts import DEFAULT_LIMIT, HISTOGRAMS, MAX_LIMIT, MAX_VIEW_BYTES
from .schemas import AckBody, RebaselineBody, SilenceBody

TAG_MONITORING = {"name": "Monitoring", "description": "Read-only JSON views of windows, drift, performance "
                                                        "and alerts (field reference: docs/views.md)."}
TAG_ADMIN = {"name": "Admin", "description": "Operator actions; every one needs the bearer token (VIGIL_API_TOKEN)."}

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_TIME = {"type": "number", "description": "epoch seconds (UTC); the same field with `_iso` is ISO-8601"}


def _int(name: str, default: int, low: int, high: int, doc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": doc,
            "schema": {"type": "integer", "minimum": low, "maximum": high, "default": default}}


LIMIT = _int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT, "newest windows (or transitions) to return")
SINCE = {"name": "since", "in": "query", "required": False, "schema": {"type": "number"},
         "description": "only windows that ended at or after this time (epoch seconds)"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {401: "missing or wrong bearer token", 403: "admin endpoints are disabled until VIGIL_API_TOKEN is set",
            404: "no such target", 422: "invalid parameter or body", 503: "the store is unavailable; retry later"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def _ok(description: str, properties: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if properties:
        schema["properties"] = properties
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}}}


def _get(summary: str, description: str, params: list, ok: dict, *errors: int, tag=TAG_MONITORING) -> dict:
    return {"get": {"tags": [tag["name"]], "summary": summary, "description": description, "parameters": params,
                    "responses": {**ok, **_errors(*errors)}}}


def _post(summary: str, body: type, ok: dict, *errors: int, security=True) -> dict:
    op = {"tags": [TAG_ADMIN["name"]], "summary": summary,
          "requestBody": {"required": True, "content": {"application/json": {
              "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}},
          "responses": {**ok, **_errors(*errors)}}
    if security:
        op["security"] = [{"bearer": []}]
    return {"post": op}


_LIST = {"type": "array", "items": {"type": "object"}}
_TRUNCATED = {"type": "boolean", "description": f"entries were left out to keep the answer under {MAX_VIEW_BYTES} bytes"}
_SUMMARY = {"summary": {"type": "string", "description": "e.g. 'drifted in the last window (12): alcohol, region'"},
            "progress": {"type": "string", "description": "e.g. 'window 13: 6/1000 rows, closes at ...'"}}


def mounted_paths() -> dict[str, Any]:
    """OpenAPI path items of the mounted apps."""
    return {
        "/monitoring/status": _get(
            "This worker's view of the monitor",
            "Queue, windows (with the open window's progress and the time to a first drift signal), alerts.",
            [], _ok("status", {**_SUMMARY, "model": {"type": "string"}, "windows": {"type": "object"},
                               "monitor_queue": {"type": "object"}, "alerts": {"type": "object"}})),
        "/monitoring/drift": _get(
            "Evaluated windows, newest first",
            "Each window's drift per feature (statistic, p_value, p_holm, effect, score, flagged; flagged features "
            "carry reference vs window statistics), quality, prediction drift and serving figures.",
            [LIMIT, SINCE], _ok("drift", {**_SUMMARY, "windows": _LIST, "truncated": _TRUNCATED}), 422, 503),
        "/monitoring/windows": _get(
            "Every panel's per-window figures in columns, oldest first (the dashboard's view)",
            "Columns of serving, drift (features x windows matrices), prediction and quality figures.",
            [LIMIT, SINCE], _ok("windows", {**_SUMMARY, "windows": {"type": "object"}, "drift": {"type": "object"},
                                            "features": {"type": "array", "items": {"type": "string"}}}), 422, 503),
        "/monitoring/features/{name}": _get(
            "One feature over the last windows", "Its statistic, p-values, score and quality per window, and "
            "histograms of the reference and recent windows on the reference's bins.",
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}, LIMIT,
             _int("histograms", HISTOGRAMS, 0, 50, "windows whose histograms to include"), SINCE],
            _ok("one feature", {"feature": {"type": "string"}, "kind": {"type": "string"},
                                "reference": {"type": "object"}, "windows": {"type": "object"},
                                "histograms": _LIST}), 404, 422, 503),
        "/monitoring/performance": _get(
            "Realized and estimated performance per window",
            "Coverage of labels, `final` (the window is closed and labelled enough), realized metrics against the "
            "validation band, CBPE estimates.",
            [LIMIT], _ok("performance", {"windows": _LIST, "outcomes": {"type": "object"},
                                         "truncated": _TRUNCATED}), 422, 503),
        "/monitoring/alerts": _get(
            "Rules, alert states, silences and recent transitions", "Each alert's `value_is` says what its "
            "`value` is (a score, a p-value, a rate...).",
            [LIMIT], _ok("alerts", {"rules": _LIST, "firing": _LIST, "alerts": _LIST, "recent": _LIST,
                                    "silences": _LIST, "sinks": {"type": "array", "items": {"type": "string"}},
                                    "truncated": _TRUNCATED}), 422, 503),
        "/monitoring/sample": {"get": {**_get(
            "Labelled rows of the model's validation data", "What `vigil simulate` replays; needs the token.",
            [_int("limit", 200, 1, MAX_SAMPLE_ROWS, "rows"), _int("seed", 0, 0, 2 ** 32 - 1, "sampling seed")],
            _ok("rows", {"rows": _LIST}), 401, 403, 422, 503)["get"], "security": [{"bearer": []}]}},
        "/admin/silences": _post("Silence a rule (or '*') for some seconds", SilenceBody,
                                 _ok("the silence", {"id": {"type": "integer"}, "until": _TIME}, 201),
                                 401, 403, 422, 503),
        "/admin/silences/{silence_id}": {"delete": {
            "tags": [TAG_ADMIN["name"]], "summary": "End a silence", "security": [{"bearer": []}],
            "parameters": [{"name": "silence_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {**_ok("ended", {"id": {"type": "integer"}, "ended": {"type": "boolean"}}),
                          **_errors(401, 403, 404, 422, 503)}}},
        "/admin/alerts/ack": _post("Acknowledge a firing alert (stops its repeats)", AckBody,
                                   _ok("acknowledged", {"acknowledged": {"type": "integer"}}), 401, 403, 404, 422, 503),
        "/admin/rebaseline": _post("Adopt an evaluated window as the drift reference", RebaselineBody,
                                   _ok("adopted", {"version": {"type": "integer"}, "window_id": {"type": "integer"}},
                                       201), 401, 403, 404, 422, 503),
        "/dashboard/": {"get": {"tags": [TAG_MONITORING["name"]], "summary": "The dashboard page (HTML)",
                                "responses": {"200": {"description": "the page",
                                                      "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }


def openapi30(schema: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema in OpenAPI 3.0's dialect (BentoML serves
    3.0.2, validated as draft 4): numeric ``exclusiveMinimum``/``exclusiveMaximum`` become
    a bound with a boolean flag, ``anyOf [X, null]`` becomes ``X`` with ``nullable``."""
    if isinstance(schema, list):
        return [openapi30(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: openapi30(v) for k, v in schema.items()}
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        v = out.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[bound], out[key] = v, True
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        (other,) = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        out = {**other, **out, "nullable": True}
    return out


def merge(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (BentoML's OpenAPI document) with the mounted apps' paths, tags, request
    bodies and bearer scheme added; paths BentoML already describes are left as they are."""
    paths = spec.setdefault("paths", {})
    for path, item in mounted_paths().items():
        paths.setdefault(path, item)
    tags = spec.setdefault("tags", [])
    for tag in (TAG_MONITORING, TAG_ADMIN):
        if all(t.get("name") != tag["name"] for t in tags):
            tags.append(tag)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for body in (SilenceBody, AckBody, RebaselineBody):
        schemas.setdefault(body.__name__, openapi30(body.model_json_schema(ref_template="#/components/schemas/{model}")))
    components.setdefault("securitySchemes", {}).setdefault("bearer", {"type": "http", "scheme": "bearer"})
    return spec
