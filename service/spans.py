"""Vigil's child spans inside a request, recorded as timestamps and built once as SDK spans
(see :class:`ChildSpans`). They go through the one pipeline :mod:`service.telemetry` installs."""

from __future__ import annotations

import contextlib
import time
import traceback
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from .telemetry import Telemetry


class ChildSpans:
    """Vigil's spans inside a request (validation, model call, monitor hand-off), cheaply.

    The request path takes ``time.time_ns()`` marks; each span is built once, when its
    step is over, as the SDK's own :class:`~opentelemetry.sdk.trace.ReadableSpan` and
    handed to the provider's span processor: the same batch queue, exporter, drop count
    and shutdown as BentoML's server span. The sampling decision is the server span's
    (what the default parent-based sampler decides for a child; every standard sampler
    agrees for a child of a local parent). This skips what an SDK span pays for being
    mutable while it is open (a lock, attribute re-validation on every call, a context
    attach and detach, a sampler call): three such spans cost about a quarter of this
    service's CPU per request on a small model (``benchmarks/serving_overhead.py``).

    A step that can itself create spans (the model call: a pipeline may call an
    instrumented client) runs under :meth:`RequestSpans.activate`, which makes its span
    id current, so nested spans are its children.
    """

    def __init__(self, telemetry: Telemetry, scope_name: str = "vigil"):
        self._processor = telemetry.span_processor
        self._resource = telemetry.tracer_provider.resource
        self._scope = InstrumentationScope(scope_name)
        self._new_id = telemetry.tracer_provider.id_generator.generate_span_id

    def for_request(self, parent) -> "RequestSpans":
        """Spans under ``parent`` (an OTel span); a no-op recorder when it is not sampled."""
        ctx = parent.get_span_context()
        if self._processor is None or not (ctx.is_valid and ctx.trace_flags.sampled):
            return _NO_SPANS
        return RequestSpans(self, ctx)


class RequestSpans:
    """One request's child spans; see :class:`ChildSpans`. Not thread-safe (one request)."""

    __slots__ = ("_owner", "_parent")

    def __init__(self, owner: ChildSpans | None, parent) -> None:
        self._owner = owner
        self._parent = parent

    def add(self, name: str, start_ns: int, attributes: dict[str, Any], *, end_ns: int | None = None,
            error: BaseException | None = None, span_id: int | None = None) -> None:
        """Record a finished child span from ``start_ns`` to ``end_ns`` (default: now).

        ``attributes`` must hold plain values (str, bool, int, float). ``error`` marks the
        span failed and records the exception as an event, as ``Span.record_exception``
        does. ``span_id`` is the id :meth:`activate` made current, if any.
        """
        owner = self._owner
        if owner is None:
            return
        end = time.time_ns() if end_ns is None else end_ns
        parent = self._parent
        events: tuple = ()
        status = _STATUS_UNSET
        if error is not None:
            status = Status(StatusCode.ERROR, type(error).__name__)
            events = (Event("exception", _exception_attributes(error), end),)
        ctx = SpanContext(parent.trace_id, span_id if span_id is not None else owner._new_id(), False,
                          parent.trace_flags, parent.trace_state)
        span = ReadableSpan(name, ctx, parent, owner._resource, attributes, events, (), SpanKind.INTERNAL, None,
                            status, start_ns, end, owner._scope)
        owner._processor.on_end(span)

    @contextlib.contextmanager
    def activate(self):
        """Make a new span id current for the block (nested spans become its children);
        yields the id to pass to :meth:`add` (None when nothing is recorded)."""
        owner = self._owner
        if owner is None:
            yield None
            return

        parent = self._parent
        span_id = owner._new_id()
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(SpanContext(
            parent.trace_id, span_id, False, parent.trace_flags, parent.trace_state))))
        try:
            yield span_id
        finally:
            context.detach(token)


def _exception_attributes(exc: BaseException) -> dict[str, str]:
    module, qualname = type(exc).__module__, type(exc).__qualname__
    return {"exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exc),
            "exception.stacktrace": "".join(traceback.format_exception(exc)),
            "exception.escaped": "False"}


_STATUS_UNSET = Status(StatusCode.UNSET)
_NO_SPANS = RequestSpans(None, None)
