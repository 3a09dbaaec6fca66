"""The fixed BentoML request timeout: same behaviour, and the request is not kept alive."""

import asyncio
import contextvars
import gc
import weakref

from service import bentoml_fixes

_request_state = contextvars.ContextVar("request_state")


class Held:
    """Stands in for what a request's context holds (its server span, for one)."""


def _fixed_class():
    assert bentoml_fixes.apply()
    from bentoml._internal.server.http import traffic

    return traffic.TimeoutMiddleware


def test_bentoml_builds_its_middleware_stack_with_the_fixed_class():
    fixed = _fixed_class()
    assert fixed.__name__ == "CancellingTimeoutMiddleware" and bentoml_fixes.apply()  # idempotent
    from bentoml._internal.server.base_app import BaseAppFactory

    class App(BaseAppFactory):
        name = "t"

    (mw,) = App(timeout=60).middlewares
    assert mw.cls is fixed


async def _ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve_once(middleware, app_state: Held, loop: asyncio.AbstractEventLoop) -> list[dict]:
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        _request_state.set(app_state)  # as the tracing middleware sets the current span
        await middleware({"type": "http", "path": "/predict"}, receive, send)

    loop.run_until_complete(main())
    return sent


def test_a_finished_request_is_not_kept_alive_by_its_timer():
    fixed = _fixed_class()
    loop = asyncio.new_event_loop()  # the loop outlives the request, as a server's does
    try:
        held = Held()
        ref = weakref.ref(held)
        sent = _serve_once(fixed(_ok_app, timeout=60), held, loop)
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert sent[0]["status"] == 200
        del held
        gc.collect()
        assert ref() is None, "the request's context is still reachable after the response"
    finally:
        loop.close()


def test_a_request_that_takes_too_long_gets_504_and_is_cancelled():
    fixed = _fixed_class()
    cancelled = []

    async def slow_app(scope, receive, send):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop = asyncio.new_event_loop()
    try:
        sent = _serve_once(fixed(slow_app, timeout=0.05), Held(), loop)
    finally:
        loop.close()
    assert sent[0]["status"] == 504 and b"0.05 seconds" in sent[1]["body"]
    assert cancelled == [True]
