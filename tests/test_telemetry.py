import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import telemetry


class FailingExporter(SpanExporter):
    def __init__(self, raises: bool):
        self.raises = raises
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        if self.raises:
            raise ConnectionRefusedError("backend down")
        return SpanExportResult.FAILURE

    def shutdown(self):
        pass


class HangingExporter(SpanExporter):
    def __init__(self):
        self.release = threading.Event()

    def export(self, spans):
        self.release.wait(60)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.wait(60)


def test_spans_share_one_pipeline_and_are_sampled_when_exporting():
    exp = InMemorySpanExporter()
    tel = telemetry.build(span_exporter=exp)
    tracer = tel.tracer()
    with tracer.start_as_current_span("server") as parent:
        with tracer.start_as_current_span("child"):
            pass
    tel.tracer_provider.force_flush()
    spans = {s.name: s for s in exp.get_finished_spans()}
    assert set(spans) == {"server", "child"}
    assert spans["child"].parent.span_id == parent.get_span_context().span_id
    assert tel.shutdown(timeout=2)


def test_without_exporter_nothing_is_sampled_but_trace_ids_exist(monkeypatch):
    for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(k, raising=False)
    tel = telemetry.build()
    assert not tel.traces_exporting
    with tel.tracer().start_as_current_span("x") as span:
        ctx = span.get_span_context()
    assert ctx.trace_id != 0 and not ctx.trace_flags.sampled


def test_endpoint_in_env_turns_otlp_on(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    tel = telemetry.build()
    assert tel.traces_exporting and tel.metrics_exporting
    with tel.tracer().start_as_current_span("x") as span:
        assert span.get_span_context().trace_flags.sampled
    assert tel.shutdown(timeout=4)


@pytest.mark.parametrize("raises", [True, False])
def test_export_failures_are_counted_never_raised(raises):
    exp = FailingExporter(raises)
    tel = telemetry.build(span_exporter=exp)
    for _ in range(5):
        with tel.tracer().start_as_current_span("x"):
            pass
    tel.tracer_provider.force_flush()
    assert exp.calls >= 1
    assert tel.drops.counts["spans"] == 5
    tel.shutdown(timeout=2)


def test_full_span_queue_drops_are_counted_and_shutdown_is_bounded(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    exp = HangingExporter()
    tel = telemetry.build(span_exporter=exp)
    start = time.perf_counter()
    for _ in range(200):
        with tel.tracer().start_as_current_span("x"):
            pass
    assert time.perf_counter() - start < 2.0  # a stalled exporter never stalls the caller
    assert tel.drops.counts["spans"] >= 200 - 8 - 4
    start = time.perf_counter()
    assert tel.shutdown(timeout=1.0) is False
    assert time.perf_counter() - start < 2.0
    exp.release.set()


@pytest.mark.parametrize("keep", [False, True])
def test_asgi_message_spans_are_left_out_unless_asked_for(keep):
    exp = InMemorySpanExporter()
    tel = telemetry.build(span_exporter=exp, keep_asgi_events=keep)
    tracer = tel.tracer()
    with tracer.start_as_current_span("POST /predict"):
        with tracer.start_as_current_span("POST /predict http send", attributes={"asgi.event.type": "http.response.body"}):
            pass
        with tracer.start_as_current_span("vigil.validate"):
            pass
    tel.tracer_provider.force_flush()
    names = sorted(s.name for s in exp.get_finished_spans())
    expected = ["POST /predict", "vigil.validate"] + (["POST /predict http send"] if keep else [])
    assert names == sorted(expected)
    assert tel.drops.counts["spans"] == 0  # left out by design, not dropped
