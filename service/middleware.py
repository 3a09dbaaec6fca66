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
#: Set in ``scope`` by the middleware: True when the caller's own ids may be kept for feedback
#: (no token is configured, or the request presented it).
SCOPE_TRUSTED = "vigil.trusted_caller"

_ENDPOINTS = (("/predict", "predict"), ("/feedback", "feedback"), ("/monitoring", "monitoring"),
              ("/admin", "admin"))
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


class BodyRefused(Exception):
    """A request whose body is refused before the app sees it: ``status`` (400 or 413),
    ``kind`` (the validation-error label) and a message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def declared_length(headers) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of a request, or :class:`BodyRefused` for an ambiguous framing.

    A request with both ``Transfer-Encoding`` and ``Content-Length`` is refused (400): the
    HTTP server frames such a body by ``Transfer-Encoding`` (RFC 9112 6.3), so the
    declared length says nothing about what will be read, and the pair is the classic
    request-smuggling shape. Several ``Content-Length`` values that disagree are refused too."""
    lengths, chunked = set(), False
    for k, v in headers:
        if k == b"content-length":
            lengths.add(v.strip())
        elif k == b"transfer-encoding":
            chunked = True
    if chunked and lengths:
        raise BodyRefused(400, N.ERR_MALFORMED, "a request may not carry both Transfer-Encoding and Content-Length")
    if len(lengths) > 1:
        raise BodyRefused(400, N.ERR_MALFORMED, "conflicting Content-Length headers")
    if not lengths:
        return None, chunked
    (raw,) = lengths
    if not raw.isdigit() or len(raw) > 19:
        raise BodyRefused(400, N.ERR_MALFORMED, "invalid Content-Length header")
    return int(raw), chunked


async def read_limited(receive: Callable, limit: int) -> Callable:
    """Read a body of unknown length (chunked) up to ``limit`` bytes, counting every chunk
    as it arrives; returns a ``receive`` that replays it. Over the limit:
    :class:`BodyRefused` (413), with nothing more read."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise BodyRefused(413, N.ERR_BODY_TOO_LARGE, f"request body exceeds the limit of {limit} bytes")
        chunks.append(body)
        more = message.get("more_body", False)
    replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replayed():
        return replay.pop() if replay else await receive()

    return replayed


def _bearer(headers) -> bytes | None:
    for k, v in headers:
        if k == b"authorization":
            return v
    return None


class VigilMiddleware:
    """Token, content type and body limit on the way in; request metrics and the serving
    figures of ``/predict`` on the way out. Options: ``settings`` (the server's settings),
    ``monitor`` (a :class:`MonitorRef`).

    Access: ``/feedback`` and ``/admin`` need the bearer token (``/admin`` is refused
    outright without one configured), ``/predict`` when ``protect_predict``,
    ``/monitoring`` when ``protect_monitoring``. On an open ``/predict``, a request that
    presents a wrong bearer token is refused (401) rather than served anonymously, and
    :data:`SCOPE_TRUSTED` tells the handler whether the caller's own ids may be kept."""

    def __init__(self, app, settings, monitor: MonitorRef):
        self.app = app
        self.settings = settings
        self.ref = monitor
        token = settings.api_token
        self._expected = None if token is None else b"Bearer " + token.get_secret_value().encode()
        self._guarded = {"feedback", "admin"} | ({"predict"} if settings.protect_predict else set()) | (
            {"monitoring"} if getattr(settings, "protect_monitoring", False) else set())

    def _access(self, endpoint: str | None, headers, path: str = "") -> tuple[int, str] | bool:
        """True/False (authenticated or not) when the request may proceed, else (status, error)."""
        if self._expected is None:
            if endpoint == "admin":  # silencing alerts is never open to anyone
                return 403, "admin endpoints are disabled until VIGIL_API_TOKEN is set"
            return False
        given = _bearer(headers)
        ok = given is not None and hmac.compare_digest(given, self._expected)
        if not ok and (endpoint in self._guarded or path.rstrip("/") in _PROTECTED_PATHS or (given is not None and given[:7].lower() == b"bearer "
                                                     and endpoint == "predict")):
            return 401, "missing or wrong bearer token"
        return ok

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _json_errors(send)
        endpoint = endpoint_of(scope.get("path", ""))
        monitor = self.ref.monitor
        settings = self.settings
        metrics = monitor.metrics if monitor is not None and endpoint is not None else None
        start = time.perf_counter()
        status_holder = [500]
        headers = scope.get("headers", ())

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        async def refuse(status: int, kind: str | None, body: dict, extra: list | None = None) -> None:
            if metrics is not None and kind is not None:
                metrics[N.M_VALIDATION_ERRORS].add(1, kind=kind)
            status_holder[0] = status
            await _send_json(send, status, body, extra)

        try:
            access = self._access(endpoint, headers, scope.get("path", ""))
            if isinstance(access, tuple):
                extra = [(b"www-authenticate", b"Bearer")] if access[0] == 401 else None
                return await refuse(access[0], N.ERR_UNAUTHORIZED, {"error": access[1]}, extra)
            # the caller's own ids (X-Request-ID, instance ids) are kept only from callers that
            # could also label them: everyone without a token, token holders with one
            scope[SCOPE_TRUSTED] = access or self._expected is None
            # only JSON bodies reach the parser (BentoML would 500 on a broken multipart form)
            if endpoint in ("predict", "feedback") and scope.get("method") == "POST":
                ctype = b""
                for k, v in headers:
                    if k == b"content-type":
                        ctype = v.split(b";")[0].strip().lower()
                        break
                if ctype not in _JSON_TYPES:
                    return await refuse(415, N.ERR_MALFORMED, {
                        "error": f"unsupported content type {ctype.decode('latin-1')[:80]!r}; send application/json"})
            # body size: a declared length is checked before anything is read; a body without
            # one (chunked) is counted as it streams, read up to the limit and then replayed.
            # Refusals close the connection: the unread rest of the body is never parsed as a request.
            limit = settings.max_body_bytes
            app_receive = receive
            try:
                declared, chunked = declared_length(headers)
                if declared is not None and declared > limit:
                    raise BodyRefused(413, N.ERR_BODY_TOO_LARGE,
                                      f"request body of {declared} bytes exceeds the limit of {limit} bytes")
                if declared is None and (chunked or scope.get("method") in ("POST", "PUT", "PATCH")):
                    app_receive = await read_limited(receive, limit)
            except BodyRefused as exc:
                return await refuse(exc.status, exc.kind, {"error": exc.message}, [(b"connection", b"close")])
            await self.app(scope, app_receive, send_wrapper)
            status = status_holder[0]
            if 400 <= status < 500 and not scope.get(SCOPE_COUNTED) and endpoint in ("predict", "feedback"):
                if metrics is not None:
                    metrics[N.M_VALIDATION_ERRORS].add(1, kind=N.ERR_MALFORMED)
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
