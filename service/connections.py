"""A deadline for each request head: connections that send nothing, or send their head a
byte at a time, are closed.

Uvicorn (as BentoML runs it) times out an idle kept-alive connection only until its first
byte arrives, and a new connection not at all: a client that opens connections and never
completes a request line holds a socket, a file descriptor and a protocol object each,
forever (slowloris). :func:`apply` swaps in, for the HTTP protocol class uvicorn picks,
a subclass that arms a timer when a connection opens and again after each response; when
it fires and no new request head has been parsed since, the connection is closed. A
request in progress is never cut by it: the body and the response are bounded by
BentoML's request timeout (``traffic.timeout``).

Apply before uvicorn loads its configuration (the service module is imported first, so
importing :mod:`service.app` is early enough). Idempotent; on a uvicorn without the
expected shape it leaves uvicorn alone and logs why.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_applied: float | None = None


def _with_head_deadline(base: type, seconds: float) -> type:
    class HeadDeadline(base):  # type: ignore[misc, valid-type]
        _vigil_timer = None
        _vigil_armed_for = None

        def _vigil_arm(self) -> None:
            if self._vigil_timer is not None:
                self._vigil_timer.cancel()
            self._vigil_armed_for = self.cycle  # a new request replaces ``cycle``
            self._vigil_timer = self.loop.call_later(seconds, self._vigil_expire)

        def _vigil_expire(self) -> None:
            self._vigil_timer = None
            if self.cycle is self._vigil_armed_for and not self.transport.is_closing():
                self.transport.close()  # no complete request head within the deadline

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._vigil_arm()

        def on_response_complete(self) -> None:
            self._vigil_arm()  # before: a pipelined request started in there must not be cut
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            if self._vigil_timer is not None:
                self._vigil_timer.cancel()
                self._vigil_timer = None
            super().connection_lost(exc)

    HeadDeadline.__name__ = HeadDeadline.__qualname__ = f"HeadDeadline{base.__name__}"
    return HeadDeadline


def apply(seconds: float) -> bool:
    """Give uvicorn's automatic HTTP protocol a request-head deadline of ``seconds``."""
    global _applied
    if _applied is not None:
        return _applied == seconds
    try:
        from uvicorn.protocols.http import auto
    except ImportError as exc:
        log.warning("uvicorn not found (%s); connections get no request-head deadline", exc)
        return False
    base = auto.AutoHTTPProtocol
    needed = ("connection_made", "connection_lost", "on_response_complete")
    if not all(callable(getattr(base, n, None)) for n in needed):
        log.warning("uvicorn's %s changed shape; connections get no request-head deadline", base.__name__)
        return False
    auto.AutoHTTPProtocol = _with_head_deadline(base, seconds)
    _applied = seconds
    return True
