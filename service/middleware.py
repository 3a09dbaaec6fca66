"""ASGI middleware: body-size limit, bearer-token check, and request metrics.

It runs inside BentoML's server span, for every request, so that rejections BentoML
makes itself (malformed JSON, a body without ``instances``) are counted too.
"""

from __future__ import annotations

import hmac
import json
import time
from http import HTTPStatus
from typing import Any, Callable

from opentelemetry import trace

from monitoring import names as N

#: Set in ``scope`` by a handler that already counted its own validation error.
SCOPE_COUNTED = "vigil.validation_counted"

_ENDPOINTS = (("/predict", "predict"), ("/feedback", "feedback"), ("/monitoring", "monitoring"),
              ("/admin", "admin"))
_PROTECTED = ("feedback", "admin")
#: Paths under an open endpoint that take the token too: stored rows are data, not a view.
_PROTECTED_PATHS = ("/monitoring/sample",)


def endpoint_of(path: str) -> str | None:
    for prefix, name in _ENDPOINTS:
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


async def _send_json(send: Callable, status: int, body: dict[str, Any], headers: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


_JSON_TYPES = (b"", b"application/json", b"text/plain")


def _json_errors(send: Callable) -> Callable:
    """Wrap ``send`` so that every 4xx/5xx leaves as JSON ``{"error": ...}`` (Starlette's
    own 404/405 are plain text), keeping headers such as ``Allow``."""
    held: dict[str, Any] = {}

    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if message["status"] >= 400 and not ctype.startswith(b"application/json"):
                held["start"], held["body"] = message, []
                return
            return await send(message)
        if message["type"] == "http.response.body" and "start" in held:
            held["body"].append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            text = b"".join(held.pop("body")).decode("utf-8", "replace").strip()

            phrase = HTTPStatus(start["status"]).phrase if start["status"] in HTTPStatus._value2member_map_ else "Error"
            payload = json.dumps({"error": text[:500] or phrase}).encode()
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({**start, "headers": headers})
            return await send({"type": "http.response.body", "body": payload})
        return await send(message)

    return wrapped


def _trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


class MonitorRef:
    """The worker's :class:`~monitoring.runtime.monitor.ModelMonitor`, set once the service
    instance exists. BentoML builds the middleware stack before it creates the service, so
    the middleware cannot be handed the monitor directly; until it is set, requests pass
    through unmeasured (access control and body limits still apply)."""

    monitor = None


class VigilMiddleware:
    """Token, content type and body limit on the way in; request metrics and the serving
    figures of ``/predict`` on the way out. Options: ``settings`` (the server's settings),
    ``monitor`` (a :class:`MonitorRef`)."""

    def __init__(self, app, settings, monitor: MonitorRef):
        self.app = app
        self.settings = settings
        self.ref = monitor

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _json_errors(send)
        endpoint = endpoint_of(scope.get("path", ""))
        if endpoint is None:
            return await self.app(scope, receive, send)
        monitor = self.ref.monitor
        settings = self.settings
        metrics = monitor.metrics if monitor is not None else None
        start = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        def count_rejection(kind: str) -> None:
            if metrics is not None:
                metrics[N.M_VALIDATION_ERRORS].add(1, kind=kind)

        try:
            # access control
            token = settings.api_token
            if token is None and endpoint == "admin":  # silencing alerts is never open to anyone
                count_rejection(N.ERR_UNAUTHORIZED)
                status_holder[0] = 403
                return await _send_json(send, 403, {
                    "error": "admin endpoints are disabled until VIGIL_API_TOKEN is set"})
            if token is not None and (endpoint in _PROTECTED or scope.get("path", "").rstrip("/") in _PROTECTED_PATHS
                                      or (endpoint == "predict" and settings.protect_predict)):
                given = b""
                for k, v in scope.get("headers", ()):
                    if k == b"authorization":
                        given = v
                        break
                expected = b"Bearer " + token.get_secret_value().encode()
                if not hmac.compare_digest(given, expected):
                    count_rejection(N.ERR_UNAUTHORIZED)
                    status_holder[0] = 401
                    return await _send_json(send, 401, {"error": "missing or wrong bearer token"},
                                            [(b"www-authenticate", b"Bearer")])
            # only JSON bodies reach the parser (BentoML would 500 on a broken multipart form)
            if endpoint in ("predict", "feedback") and scope.get("method") == "POST":
                ctype = b""
                for k, v in scope.get("headers", ()):
                    if k == b"content-type":
                        ctype = v.split(b";")[0].strip().lower()
                        break
                if ctype not in _JSON_TYPES:
                    count_rejection(N.ERR_MALFORMED)
                    status_holder[0] = 415
                    return await _send_json(send, 415, {
                        "error": f"unsupported content type {ctype.decode('latin-1')[:80]!r}; send application/json"})
            # body size: a declared length is checked before anything is read; a body
            # without one (chunked) is read here up to the limit and then replayed.
            limit = settings.max_body_bytes
            declared = None
            for k, v in scope.get("headers", ()):
                if k == b"content-length":
                    try:
                        declared = int(v)
                    except ValueError:
                        declared = -1
                    break
            if declared is not None and (declared > limit or declared < 0):
                too_big = declared > limit
                count_rejection(N.ERR_BODY_TOO_LARGE if too_big else N.ERR_MALFORMED)
                status_holder[0] = 413 if too_big else 400
                msg = (f"request body of {declared} bytes exceeds the limit of {limit} bytes"
                       if too_big else "invalid Content-Length header")
                return await _send_json(send, status_holder[0], {"error": msg})
            app_receive = receive
            if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    body = message.get("body", b"")
                    size += len(body)
                    if size > limit:
                        count_rejection(N.ERR_BODY_TOO_LARGE)
                        status_holder[0] = 413
                        return await _send_json(send, 413, {"error": f"request body exceeds the limit of {limit} bytes"})
                    chunks.append(body)
                    more = message.get("more_body", False)
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

                async def app_receive():
                    return replay.pop() if replay else await receive()

            await self.app(scope, app_receive, send_wrapper)
            status = status_holder[0]
            if 400 <= status < 500 and not scope.get(SCOPE_COUNTED) and endpoint in ("predict", "feedback"):
                count_rejection(N.ERR_MALFORMED)
        finally:
            if metrics is not None:
                status = status_holder[0]
                outcome = (N.OUTCOME_OK if status < 400 else N.OUTCOME_CLIENT_ERROR if status < 500
                           else N.OUTCOME_SERVER_ERROR)
                elapsed = time.perf_counter() - start
                metrics[N.M_REQUESTS].add(1, endpoint=endpoint, outcome=outcome)
                metrics[N.M_REQUEST_DURATION].record(elapsed, endpoint=endpoint, outcome=outcome)
                if endpoint == "predict":
                    monitor.record_request(status, elapsed, _trace_id())  # metrics set: monitor is too
