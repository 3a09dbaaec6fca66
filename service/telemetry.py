"""One trace pipeline and one meter pipeline per process, configured by ``OTEL_*``.

BentoML builds its ASGI tracing middleware from ``BentoMLContainer.tracer_provider`` and
never sets OpenTelemetry's global provider, so by default its spans and ours would go to
different places (ours nowhere). :func:`install` builds a single ``TracerProvider``
(sampler, exporter, resource), hands it to BentoML *and* sets it globally, so BentoML's
server span and Vigil's child spans share one sampler, one exporter and one shutdown.

Standard variables honoured: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
(``otlp``, ``console``, ``none``), ``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_ENDPOINT``,
``..._PROTOCOL`` (``http/protobuf`` default, or ``grpc``), ``..._HEADERS``,
``..._TIMEOUT``, ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``.

Sampling defaults to every request (parent-based always-on) when an exporter is set, and
to none otherwise; trace ids are generated either way, so ``traceparent`` is always
returned. Exporter failures are caught at the export edge and counted as dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from opentelemetry import metrics, trace
from opentelemetry._logs import NoOpLogger
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogExporter, LogExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (ALWAYS_OFF, Decision, ParentBased, Sampler, SamplingResult,
                                               _get_from_env_or_default)
from opentelemetry.trace import SpanKind

from monitoring import names as N

log = logging.getLogger(__name__)

_lock = threading.Lock()
_installed: "Telemetry | None" = None


class DropCounter:
    """Thread-safe counts of dropped telemetry, per signal; mirrored to metrics once bound."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {"spans": 0, "metrics": 0, "logs": 0}
        self.spans_ended = 0  # offered for export (sampled, past the ASGI filter): >= spans dropped
        self._metrics = None

    def ended(self) -> None:
        with self._lock:
            self.spans_ended += 1

    def bind(self, metrics) -> None:
        with self._lock:
            pending, self._metrics = dict(self.counts), metrics
        for signal, n in pending.items():
            if n:
                metrics[N.M_TELEMETRY_DROPPED].add(n, signal=signal)

    def add(self, signal: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            self.counts[signal] += n
            metrics = self._metrics
        if metrics is not None:
            metrics[N.M_TELEMETRY_DROPPED].add(n, signal=signal)


def _span_exporter_safe(exporter, drops: DropCounter):
    """Wrap a span exporter: exceptions and failures are counted, never raised."""

    class SafeSpanExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                result = exporter.export(spans)
            except Exception:  # the export edge: telemetry never breaks serving
                log.warning("span export raised; %d spans dropped", len(spans), exc_info=True)
                result = SpanExportResult.FAILURE
            if result is not SpanExportResult.SUCCESS:
                drops.add("spans", len(spans))
            return result

        def shutdown(self) -> None:
            try:
                exporter.shutdown()
            except Exception:
                log.warning("span exporter shutdown raised", exc_info=True)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            try:
                return exporter.force_flush(timeout_millis)
            except Exception:
                return False

    return SafeSpanExporter()


def _counting_processor(processor, drops: DropCounter, keep_asgi_events: bool = False):
    """Count spans the batch processor drops because its bounded queue is full, and (by
    default) leave out the ASGI instrumentation's per-message spans ("http receive",
    "http send"): three of BentoML's five spans a request, which carry no more than the
    server span's own timing and status, yet cost as much to export as the rest."""

    inner = getattr(processor, "_batch_processor", None)
    queue = getattr(inner, "_queue", None)
    cap = getattr(inner, "_max_queue_size", None)
    full_log = _EveryMinute("span export queue full (backend slow or down?): %d spans dropped since the last "
                            "message; all counted in vigil_telemetry_dropped_total{signal=\"spans\"}")

    class CountingProcessor(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:
            processor.on_start(span, parent_context=parent_context)

        def on_end(self, span) -> None:
            if not span.context.trace_flags.sampled:
                return
            if not keep_asgi_events and span.attributes and "asgi.event.type" in span.attributes:
                return
            drops.ended()
            if queue is not None and cap is not None and len(queue) >= cap:
                # Dropped here, counted, not handed on: the SDK would log a warning for every
                # span it drops (thousands of lines a second while a backend is down, and
                # the logging itself slows requests down).
                drops.add("spans", 1)
                full_log.note()
                return
            processor.on_end(span)

        def shutdown(self) -> None:
            processor.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return processor.force_flush(timeout_millis)

    return CountingProcessor()


class _EveryMinute:
    """A warning logged at most once a minute, with how many times it happened meanwhile."""

    def __init__(self, message: str, interval: float = 60.0):
        self.message = message
        self.interval = interval
        self._lock = threading.Lock()
        self._count = 0
        self._last = -interval

    def note(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._count += 1
            if now - self._last < self.interval:
                return
            count, self._count, self._last = self._count, 0, now
        log.warning(self.message, count)


def _skip_asgi_messages(sampler):
    """Wrap a sampler so that the ASGI instrumentation's per-message spans ("... http
    send" / "... http receive") are never recorded: creating them costs as much as
    exporting them, and they repeat the server span's timing."""

    class SkipAsgiMessages(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):
            if kind == SpanKind.INTERNAL and (name.endswith(" http send") or name.endswith(" http receive")):
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"SkipAsgiMessages({sampler.get_description()})"

    return SkipAsgiMessages()


def _protocol(signal: str) -> str:
    return (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()


def _endpoint_set(signal: str) -> bool:
    return bool(os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _exporter_kind(signal: str) -> str:
    """``otlp`` if asked for or an endpoint is set; ``console``; else ``none``."""
    env = os.environ.get(f"OTEL_{signal}_EXPORTER")
    if env:
        kinds = [k.strip().lower() for k in env.split(",") if k.strip()]
        for k in kinds:
            if k in ("otlp", "console", "none"):
                return k
        log.warning("OTEL_%s_EXPORTER=%s not supported (use otlp, console or none); telemetry off", signal, env)
        return "none"
    return "otlp" if _endpoint_set(signal) else "none"


def _span_exporter(kind: str, timeout: float):
    # exporters are imported when chosen: only one protocol stack is loaded (grpc alone costs ~0.3 s)
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    proto = _protocol("TRACES")
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif proto in ("http/protobuf", "http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={proto!r} is not supported; use http/protobuf or grpc")
    has_timeout = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    return OTLPSpanExporter() if has_timeout else OTLPSpanExporter(timeout=timeout)


def _metric_exporter(kind: str, timeout: float):
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    proto = _protocol("METRICS")
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    has_timeout = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    return OTLPMetricExporter() if has_timeout else OTLPMetricExporter(timeout=timeout)


def _log_exporter(kind: str, timeout: float):
    if kind == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogExporter

        return ConsoleLogExporter()
    if _protocol("LOGS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter(timeout=timeout)


def _logs_kind() -> str:
    """Logs (alert records) are exported only when asked for: ``OTEL_LOGS_EXPORTER`` or a
    logs endpoint. The generic OTLP endpoint alone does not turn them on, since many trace
    backends (Jaeger, Phoenix) refuse logs."""
    if os.environ.get("OTEL_LOGS_EXPORTER") or os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        return _exporter_kind("LOGS")
    return "none"


def _log_exporter_safe(exporter, drops: DropCounter):
    class SafeLogExporter(LogExporter):
        def export(self, batch):
            try:
                res = exporter.export(batch)
            except Exception:
                res = LogExportResult.FAILURE
            if res != LogExportResult.SUCCESS:
                drops.add("logs", len(batch))
            return res

        def shutdown(self) -> None:
            try:
                exporter.shutdown()
            except Exception:
                pass

    return SafeLogExporter()


@dataclass
class Telemetry:
    tracer_provider: Any
    meter_provider: Any
    drops: DropCounter
    traces_exporting: bool
    metrics_exporting: bool
    logger_provider: Any = None
    logs_exporting: bool = False
    #: the span processor every span of this provider ends in (None when not exporting)
    span_processor: Any = None

    def logger(self):
        """The OTel logger alert records go to (a no-op one when logs are not exported)."""
        if self.logger_provider is None:
            return NoOpLogger("vigil")
        return self.logger_provider.get_logger("vigil.alerts")

    def tracer(self):
        return self.tracer_provider.get_tracer("vigil")

    def meter(self):
        return self.meter_provider.get_meter("vigil")

    def shutdown(self, timeout: float = 4.0) -> bool:
        """Flush and stop both pipelines within ``timeout`` seconds in total.

        Exporters may hang (gRPC's reconnect backoff can hold a shutdown for a minute),
        so the work runs on a daemon thread that is abandoned at the deadline.
        """
        def work():
            for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
                if provider is None:
                    continue
                try:
                    provider.shutdown()
                except Exception:
                    log.warning("telemetry shutdown raised", exc_info=True)

        t = threading.Thread(target=work, name="vigil-telemetry-shutdown", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            log.warning("telemetry shutdown did not finish within %.1fs; abandoning unsent data", timeout)
            return False
        return True


def build(resource_attributes: dict[str, Any] | None = None, span_exporter=None, metric_reader=None,
          export_timeout: float = 5.0, keep_asgi_events: bool = False, log_exporter=None) -> Telemetry:
    """Build providers from ``OTEL_*`` (or from the explicit test doubles given)."""

    drops = DropCounter()
    attrs = {"service.name": os.environ.get("OTEL_SERVICE_NAME", "vigil"), **(resource_attributes or {})}
    resource = Resource.create(attrs)  # OTEL_RESOURCE_ATTRIBUTES are merged in by the SDK

    trace_kind = "explicit" if span_exporter is not None else _exporter_kind("TRACES")
    exporting = trace_kind != "none"
    if exporting or os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = _get_from_env_or_default()
    else:
        sampler = ParentBased(ALWAYS_OFF)
    if exporting and not keep_asgi_events:
        sampler = _skip_asgi_messages(sampler)
    tp = TracerProvider(sampler=sampler, resource=resource)
    processor = None
    if exporting:
        exporter = span_exporter if span_exporter is not None else _span_exporter(trace_kind, export_timeout)
        bsp = BatchSpanProcessor(_span_exporter_safe(exporter, drops), export_timeout_millis=export_timeout * 1000)
        processor = _counting_processor(bsp, drops, keep_asgi_events)
        tp.add_span_processor(processor)

    readers = []
    metric_kind = "explicit" if metric_reader is not None else _exporter_kind("METRICS")
    if metric_reader is not None:
        readers.append(metric_reader)
    elif metric_kind != "none":
        readers.append(PeriodicExportingMetricReader(_metric_exporter(metric_kind, export_timeout),
                                                     export_timeout_millis=export_timeout * 1000))
    mp = MeterProvider(resource=resource, metric_readers=readers)

    lp = None
    log_kind = "explicit" if log_exporter is not None else _logs_kind()
    if log_kind != "none":
        lp = LoggerProvider(resource=resource)
        exporter = log_exporter if log_exporter is not None else _log_exporter(log_kind, export_timeout)
        lp.add_log_record_processor(BatchLogRecordProcessor(_log_exporter_safe(exporter, drops),
                                                            export_timeout_millis=export_timeout * 1000))
    return Telemetry(tp, mp, drops, exporting, bool(readers), lp, lp is not None, processor)


def install(resource_attributes: dict[str, Any] | None = None, export_timeout: float = 5.0,
            span_exporter=None, metric_reader=None, keep_asgi_events: bool = False) -> Telemetry:
    """Build the process's providers once and wire them into BentoML and the OTel globals.

    Must run before BentoML builds its ASGI app (i.e. at service-module import in the
    worker), because the tracing middleware reads the provider when the app is built.
    """
    global _installed
    with _lock:
        if _installed is not None:
            return _installed

        tel = build(resource_attributes, span_exporter=span_exporter, metric_reader=metric_reader,
                    export_timeout=export_timeout, keep_asgi_events=keep_asgi_events)
        try:
            # lazy: telemetry.build() (tests, benchmarks) must not pull in BentoML's container
            from bentoml._internal.configuration.containers import BentoMLContainer

            BentoMLContainer.tracer_provider.set(tel.tracer_provider)
        except Exception:  # a BentoML without this container: its spans stay separate
            log.warning("could not hand the tracer provider to BentoML; its spans will not be exported", exc_info=True)
        trace.set_tracer_provider(tel.tracer_provider)
        metrics.set_meter_provider(tel.meter_provider)
        _installed = tel
        return tel


def installed() -> Telemetry | None:
    return _installed
