"""A fix for BentoML's request timeout, applied before BentoML builds its ASGI app.

BentoML 1.4's ``TimeoutMiddleware`` schedules a timer per request with
``loop.call_later(timeout, ...)`` and never cancels it. The timer keeps the request's
context (its server span, the waiter future, BentoML's trace context) reachable for
``traffic.timeout`` seconds (60 by default) after the response: at 600 requests/s that is
36,000 requests' objects, which every full garbage collection then walks. Measured on
the demo model under ``wrk``: gen-2 collections every ~1.5 s, pausing the worker 150 ms
growing to ~300 ms and more (p99 latency 0.2-0.5 s for Vigil and for a bare BentoML
service alike).

:class:`CancellingTimeoutMiddleware` behaves as BentoML's (504 with the same message
when no response has started within the timeout, the app task cancelled) and cancels
its timer when the request is over. :func:`apply` swaps it in for the class BentoML
looks up when it builds the middleware stack; on a BentoML whose middleware no longer
has the expected shape it leaves BentoML alone and logs why.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

_applied = False


def _middleware_class():
    # lazy: BentoML's internals are looked up only when the fix is applied (and checked for shape)
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    base = traffic.TimeoutMiddleware

    class CancellingTimeoutMiddleware(base):
        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] not in ("http", "websocket"):
                return await self.app(scope, receive, send)
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

            async def _send(message: Any) -> None:
                if not waiter.done():
                    waiter.set_result(None)
                await send(message)

            fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
            try:
                await waiter
            except asyncio.TimeoutError:
                if fut.cancel():
                    resp = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                        status_code=504)
                    await resp(scope, receive, send)
            else:
                await fut
            finally:
                timer.cancel()  # what BentoML's omits: the handle would hold the request for `timeout` s

    CancellingTimeoutMiddleware.__qualname__ = CancellingTimeoutMiddleware.__name__
    return traffic, base, CancellingTimeoutMiddleware


def apply() -> bool:
    """Swap the fixed middleware in (idempotent). True if applied."""
    global _applied
    if _applied:
        return True
    try:
        traffic, base, fixed = _middleware_class()
    except Exception as exc:  # a BentoML without this module or class
        log.warning("BentoML's TimeoutMiddleware not found (%s); request timers left as BentoML has them", exc)
        return False
    if not (callable(getattr(base, "_set_timer_out", None)) and hasattr(base, "__init__")):
        log.warning("BentoML's TimeoutMiddleware changed shape; request timers left as BentoML has them")
        return False
    traffic.TimeoutMiddleware = fixed
    _applied = True
    return True
