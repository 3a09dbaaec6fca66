"""Routes, not raw paths, in every metric label and server span name.

BentoML labels its HTTP metrics (``bentoml_service_request_total{endpoint=...}`` and the
duration, in-progress and timestamp series) with the request's raw path, so each
``GET /nope/<uuid>`` adds series to every worker's multiprocess files: measured, 4,000
unknown paths took ``/metrics`` from 29 KB to 16.6 MB and a scrape to 5 s. The
OpenTelemetry ASGI middleware names the server span ``METHOD /raw/path`` (trace backends
that derive metrics from span names inherit the same growth) and, when OTLP metrics are
exported, labels ``http.server.*`` with the ``Host`` header and any method token.

:func:`route_label` maps a request to the route template that serves it, found by
Starlette's own matching on the application in ``scope["app"]`` (``/predict``,
``/admin/silences/{silence_id}``, a static mount as ``/static_content/{path}``), or to
:data:`OTHER`. :func:`apply` swaps in, before BentoML builds its middleware stack:

- BentoML's traffic-metrics middlewares, handed a scope whose ``path`` is the route (the
  raw path is restored for everything below them);
- the OpenTelemetry ASGI middleware, naming server spans ``METHOD route`` (only
  ``METHOD`` when no route matched, as the semantic conventions ask) with ``http.route``,
  and recording its metrics with a fixed set of attributes (no host, no target; an unknown
  method as ``_OTHER``).

On a BentoML or instrumentation whose classes changed shape it leaves them alone and logs why.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: The label of every request no route serves.
OTHER = "other"
_RAW_PATH = "vigil.raw_path"
_CACHE_SIZE = 512
_cache: dict[str, str] = {}
_applied = False

#: Attributes the OTel ASGI middleware's metrics keep (each takes a bounded set of values).
_METRIC_ATTRIBUTES = frozenset((
    "http.method", "http.request.method", "http.scheme", "url.scheme", "http.status_code",
    "http.response.status_code", "http.flavor", "network.protocol.version", "net.host.port", "error.type",
    "http.route"))
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))


def _match(routes, scope: dict, prefix: str) -> str | None:
    from starlette.routing import Match, Mount

    for route in routes:
        try:
            match, child = route.matches(scope)
        except Exception:  # a route that cannot judge this scope does not serve it
            continue
        if match == Match.NONE:
            continue
        path = prefix + getattr(route, "path", "")
        if isinstance(route, Mount):
            inner = route.routes
            found = _match(inner, {**scope, **child}, path) if inner else None
            return found or path + "/{path}"
        return path
    return None


def route_label(scope: dict) -> str:
    """The route template serving ``scope`` (a bounded set), or :data:`OTHER`."""
    path = scope.get("path", "")
    hit = _cache.get(path)
    if hit is not None:
        return hit
    label = _match(getattr(scope.get("app"), "routes", ()), scope, "") or OTHER
    if label == path and len(_cache) < _CACHE_SIZE:  # only parameter-free routes: a bounded set
        _cache[path] = label
    return label


class _RestorePath:
    """Below the metrics middleware: the raw path back for routing and everything else."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if _RAW_PATH in scope:
            scope = dict(scope)
            scope["path"] = scope.pop(_RAW_PATH)
        await self.app(scope, receive, send)


def _route_labelled(base: type) -> type:
    class RouteLabelled(base):  # type: ignore[misc, valid-type]
        def __init__(self, app, *args, **kwargs):
            super().__init__(_RestorePath(app), *args, **kwargs)

        async def __call__(self, scope, receive, send):
            if scope.get("type") == "http" and scope.get("path") != "/metrics":
                label = route_label(scope)
                if label != scope.get("path"):
                    scope = {**scope, "path": label, _RAW_PATH: scope["path"]}
            await super().__call__(scope, receive, send)

    RouteLabelled.__name__ = RouteLabelled.__qualname__ = f"RouteLabelled{base.__name__}"
    return RouteLabelled


def _method(scope: dict) -> str:
    m = str(scope.get("method", "")).upper()
    return m if m in _METHODS else "HTTP"


def span_details(scope: dict) -> tuple[str, dict[str, Any]]:
    """Server span name and attributes: ``METHOD route`` and ``http.route``, or ``METHOD``."""
    route = route_label(scope)
    if route == OTHER:
        return _method(scope), {}
    return f"{_method(scope)} {route}", {"http.route": route}


def bounded_attributes(attributes: Any) -> Any:
    """An instrument's attributes cut to :data:`_METRIC_ATTRIBUTES`, methods to a fixed set."""
    if not attributes:
        return attributes
    out = {k: v for k, v in attributes.items() if k in _METRIC_ATTRIBUTES}
    for k in ("http.method", "http.request.method"):
        if k in out and out[k] not in _METHODS:
            out[k] = "_OTHER"
    return out


class BoundedInstrument:
    """An OTel instrument whose ``add``/``record`` keep only bounded attributes."""

    def __init__(self, instrument):
        self._instrument = instrument

    def add(self, amount, attributes=None, *args, **kwargs):
        return self._instrument.add(amount, bounded_attributes(attributes), *args, **kwargs)

    def record(self, amount, attributes=None, *args, **kwargs):
        return self._instrument.record(amount, bounded_attributes(attributes), *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._instrument, name)


_OTEL_INSTRUMENTS = ("duration_histogram_old", "duration_histogram_new", "server_response_size_histogram",
                     "server_request_size_histogram", "active_requests_counter")


def _route_named(base: type) -> type:
    class RouteNamed(base):  # type: ignore[misc, valid-type]
        def __init__(self, app, *args, **kwargs):
            if kwargs.get("default_span_details") is None:
                kwargs["default_span_details"] = span_details
            super().__init__(app, *args, **kwargs)
            for name in _OTEL_INSTRUMENTS:
                instrument = getattr(self, name, None)
                if instrument is not None:
                    setattr(self, name, BoundedInstrument(instrument))

    RouteNamed.__name__ = RouteNamed.__qualname__ = f"RouteNamed{base.__name__}"
    return RouteNamed


def apply() -> bool:
    """Swap the route-labelled middlewares in (idempotent). True if all were applied."""
    global _applied
    if _applied:
        return True
    done = True
    try:
        from bentoml._internal.server.http import instruments

        for name in ("RunnerTrafficMetricsMiddleware", "HTTPTrafficMetricsMiddleware"):
            base = getattr(instruments, name)
            if not callable(getattr(base, "__call__", None)):
                raise TypeError(f"{name} changed shape")
            setattr(instruments, name, _route_labelled(base))
    except Exception as exc:  # a BentoML without these classes: its labels stay raw paths
        log.warning("BentoML's HTTP metrics middleware not patched (%s); its endpoint label is the raw path", exc)
        done = False
    try:
        import opentelemetry.instrumentation.asgi as otel_asgi

        otel_asgi.OpenTelemetryMiddleware = _route_named(otel_asgi.OpenTelemetryMiddleware)
    except Exception as exc:
        log.warning("OpenTelemetry's ASGI middleware not patched (%s); span names carry raw paths", exc)
        done = False
    _applied = True
    return done
