"""ASGI middleware: body-size limit, bearer-token check, and request metrics.

It runs inside BentoML's server span, for every request, so that rejections BentoML
makes itself (malformed JSON, a body without ``instances``) are counted too.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Callable

from monitoring import names as N

#: Set in ``scope`` by a handler that already counted its own validation error.
SCOPE_COUNTED = "vigil.validation_counted"

_ENDPOINTS = (("/predict", "predict"), ("/feedback", "feedback"), ("/monitoring", "monitoring"),
              ("/admin", "admin"))
_PROTECTED = ("feedback", "admin")


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


class VigilMiddleware:
    """Options: ``runtime`` (object with ``.metrics`` and ``.settings`` once the service is up)."""

    def __init__(self, app, runtime):
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = endpoint_of(scope.get("path", ""))
        settings = self.runtime.settings
        if endpoint is None or settings is None:
            return await self.app(scope, receive, send)
        metrics = self.runtime.metrics
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
            if token is not None and (endpoint in _PROTECTED or (endpoint == "predict" and settings.protect_predict)):
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
                metrics[N.M_REQUESTS].add(1, endpoint=endpoint, outcome=outcome)
                metrics[N.M_REQUEST_DURATION].record(time.perf_counter() - start, endpoint=endpoint, outcome=outcome)
