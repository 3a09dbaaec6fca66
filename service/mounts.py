"""The two Starlette apps mounted beside the BentoML API: ``/monitoring`` (read-only views;
``/monitoring/sample`` serves stored rows, so it takes the token like ``/feedback``)
and ``/admin`` (operator actions; the middleware requires the bearer token on every
``/admin`` path). Both call the serving worker's :class:`~monitoring.runtime.monitor.ModelMonitor`
off the event loop; a store outage answers 503 with ``Retry-After``, an invalid action 422,
a missing target 404.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitoring.runtime.monitor import ActionInvalid, ActionNotFound
from monitoring.runtime.views import MAX_FEATURE_HISTOGRAMS
from monitoring.store import StoreUnavailable
from monitoring.values import finite_or_none

from .dashboard import MAX_SAMPLE_ROWS
from .schemas import AckBody, RebaselineBody, SilenceBody

log = logging.getLogger("vigil.service")

#: ``?limit=`` bounds of the listing views.
MAX_LIMIT = 1000
DEFAULT_LIMIT = 20
#: Largest listing answer: entries past it are left out (``truncated``), whatever ``limit`` asked.
MAX_VIEW_BYTES = 1 << 20
#: The list each listing view bounds.
_LISTS = {"drift": "windows", "performance": "windows", "alerts": "recent"}
#: Windows whose histograms a feature's drill-down shows by default.
HISTOGRAMS = 20


def bounded(body: dict[str, Any], key: str, budget: int = MAX_VIEW_BYTES) -> dict[str, Any]:
    """``body`` with ``body[key]`` cut, newest first, to what fits in ``budget`` bytes of
    JSON; ``truncated`` says whether anything was left out. A drift window of a wide model
    is tens of KB: ``?limit=1000`` used to answer ~12 MB to anyone."""
    items = body.get(key)
    if not isinstance(items, list):
        return body
    rest = dict(body, **{key: []})
    size = len(json.dumps(rest, default=str))
    kept = []
    for item in items:
        size += len(json.dumps(item, default=str)) + 2
        if size > budget:
            break
        kept.append(item)
    return {**rest, key: kept, "truncated": len(kept) < len(items)}


async def _call(fn: Callable[..., Any], *args: Any, status: int = 200, bound: str | None = None) -> JSONResponse:
    def work() -> Any:  # off the event loop, measuring the answer included
        body = fn(*args)
        return bounded(body, bound) if bound is not None else body

    try:
        body = await run_in_threadpool(work)
    except StoreUnavailable as exc:
        log.warning("%s: store unavailable (%s)", getattr(fn, "__name__", fn), type(exc).__name__)
        return JSONResponse({"error": "the store is unavailable; retry later"}, status_code=503,
                            headers={"retry-after": "5"})
    except ActionInvalid as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    except ActionNotFound as exc:
        return JSONResponse({"error": exc.args[0]}, status_code=404)
    return JSONResponse(body, status_code=status)


def _query_int(request, name: str, default: int, low: int, high: int) -> int | JSONResponse:
    try:
        value = int(request.query_params.get(name, str(default)))
    except ValueError:
        return JSONResponse({"error": f"{name} must be an integer"}, status_code=422)
    if not low <= value <= high:
        return JSONResponse({"error": f"{name} must be between {low} and {high}"}, status_code=422)
    return value


def _query_since(request) -> float | None | JSONResponse:
    raw = request.query_params.get("since")
    if raw is None:
        return None
    try:
        since = finite_or_none(raw)
    except ValueError:
        since = None
    if since is None:
        return JSONResponse({"error": "since must be a time in epoch seconds"}, status_code=422)
    return since


def monitoring_app(service: Callable[[], Any]) -> Starlette:
    """``service()`` returns the live service instance (with ``.monitor``, ``.status`` and
    ``.sample``)."""

    async def status(request):
        return await _call(service().status)

    def listing(view: str, ranged: bool = False):
        """A GET view over the store's history, ``?limit=`` 1..1000 (default 20); ``ranged``
        views also take ``?since=`` (epoch seconds: windows that ended at or after it)."""
        async def handler(request):
            limit = _query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
            since = _query_since(request) if ranged else None
            for v in (limit, since):
                if isinstance(v, JSONResponse):
                    return v
            fn = getattr(service().monitor, view)
            bound = _LISTS.get(view)
            return await (_call(fn, limit, since, bound=bound) if ranged else _call(fn, limit, bound=bound))

        return handler

    async def feature(request):
        limit = _query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        hist = _query_int(request, "histograms", HISTOGRAMS, 0, MAX_FEATURE_HISTOGRAMS)
        since = _query_since(request)
        for v in (limit, hist, since):
            if isinstance(v, JSONResponse):
                return v
        return await _call(service().monitor.feature, request.path_params["name"], limit, hist, since)

    async def sample(request):
        limit = _query_int(request, "limit", 200, 1, MAX_SAMPLE_ROWS)
        seed = _query_int(request, "seed", 0, 0, 2 ** 32 - 1)
        for v in (limit, seed):
            if isinstance(v, JSONResponse):
                return v
        rows = service().sample
        if rows.refusal():
            return JSONResponse({"error": rows.refusal()}, status_code=403)
        return await _call(rows.sample, limit, seed)

    return Starlette(routes=[Route("/status", status, methods=["GET"]),
                             Route("/drift", listing("drift", ranged=True), methods=["GET"]),
                             Route("/windows", listing("timeline", ranged=True), methods=["GET"]),
                             Route("/features/{name:path}", feature, methods=["GET"]),
                             Route("/performance", listing("performance"), methods=["GET"]),
                             Route("/alerts", listing("alerts"), methods=["GET"]),
                             Route("/sample", sample, methods=["GET"])])


async def _body(request, model: type[BaseModel]) -> BaseModel | JSONResponse:
    try:
        raw = await request.json()
    except ValueError:
        return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    if not isinstance(raw, dict):
        return JSONResponse({"error": "body must be a JSON object"}, status_code=422)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [{"field": ".".join(map(str, e["loc"])) or None, "message": e["msg"]} for e in exc.errors()]
        first = errors[0]
        return JSONResponse({"error": f"{first['field']}: {first['message']}" if first["field"] else first["message"],
                             "errors": errors}, status_code=422)


def admin_app(service: Callable[[], Any]) -> Starlette:
    """Operator actions: silence, un-silence, acknowledge, re-baseline."""

    async def silence(request):
        b = await _body(request, SilenceBody)
        if isinstance(b, JSONResponse):
            return b
        return await _call(service().monitor.silence, b.rule, b.seconds, b.instance, b.reason, b.by, status=201)

    async def unsilence(request):
        try:
            sid = int(request.path_params["silence_id"])
        except ValueError:
            return JSONResponse({"error": "silence id must be an integer"}, status_code=422)
        return await _call(service().monitor.unsilence, sid)

    async def acknowledge(request):
        b = await _body(request, AckBody)
        if isinstance(b, JSONResponse):
            return b
        return await _call(service().monitor.acknowledge, b.rule, b.instance, b.by)

    async def rebaseline(request):
        b = await _body(request, RebaselineBody)
        if isinstance(b, JSONResponse):
            return b
        return await _call(service().monitor.rebaseline, b.window_id, b.by, status=201)

    return Starlette(routes=[Route("/silences", silence, methods=["POST"]),
                             Route("/silences/{silence_id}", unsilence, methods=["DELETE"]),
                             Route("/alerts/ack", acknowledge, methods=["POST"]),
                             Route("/rebaseline", rebaseline, methods=["POST"])])
