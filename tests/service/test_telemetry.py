import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import telemetry
from service.spans import ChildSpans


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


def test_full_span_queue_drops_are_counted_and_shutdown_is_bounded(monkeypatch, caplog):
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
    # not a log line per dropped span (the SDK's own "Queue full" warning): one, with the count
    full = [r for r in caplog.records if "queue full" in r.getMessage().lower()]
    assert len(full) == 1 and "service.telemetry" in full[0].name
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


def _server_and_children(tel, fail: bool = False):
    """What the predict handler does: a server span, then recorded children under it."""
    rec = ChildSpans(tel)
    tracer = tel.tracer()
    with tracer.start_as_current_span("POST /predict") as server:
        spans = rec.for_request(server)
        t0 = time.time_ns()
        spans.add("vigil.validate", t0, {"vigil.request.rows": 2, "vigil.outcome": "ok"})
        t1 = time.time_ns()
        with spans.activate() as model_id:
            with tracer.start_as_current_span("inside the model"):  # e.g. an instrumented client
                pass
            error = ValueError("bad input for the model") if fail else None
        spans.add("vigil.model.predict", t1, {"vigil.outcome": "server_error" if fail else "ok"},
                  error=error, span_id=model_id)
    return server


@pytest.mark.parametrize("fail", [False, True])
def test_recorded_child_spans_share_the_pipeline_and_nest_like_sdk_spans(fail):
    exp = InMemorySpanExporter()
    tel = telemetry.build(resource_attributes={"vigil.model": "m:1"}, span_exporter=exp)
    server = _server_and_children(tel, fail)
    tel.tracer_provider.force_flush()
    spans = {s.name: s for s in exp.get_finished_spans()}
    assert set(spans) == {"POST /predict", "vigil.validate", "vigil.model.predict", "inside the model"}
    root = server.get_span_context()
    validate, model, inner = spans["vigil.validate"], spans["vigil.model.predict"], spans["inside the model"]
    for s in (validate, model):
        assert s.context.trace_id == root.trace_id and s.parent.span_id == root.span_id
        assert s.context.trace_flags.sampled and s.context.span_id not in (0, root.span_id)
        assert s.resource.attributes["vigil.model"] == "m:1"
        assert s.instrumentation_scope.name == "vigil"
        assert spans["POST /predict"].start_time <= s.start_time <= s.end_time <= spans["POST /predict"].end_time
    assert validate.context.span_id != model.context.span_id
    assert validate.attributes["vigil.request.rows"] == 2
    # a span opened inside the model call is the model span's child, not the server's
    assert inner.parent.span_id == model.context.span_id
    assert validate.end_time <= model.start_time <= inner.start_time
    if fail:
        assert model.status.status_code.name == "ERROR"
        (event,) = model.events
        assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
        assert "bad input for the model" in event.attributes["exception.stacktrace"]
    else:
        assert model.status.is_unset and not model.events
    # the OTLP encoder takes them like any SDK span
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    assert encode_spans(list(exp.get_finished_spans())).SerializeToString()
    assert tel.shutdown(timeout=2)


def test_recorded_child_spans_follow_an_unsampled_parent(monkeypatch):
    for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(k, raising=False)
    tel = telemetry.build()  # not exporting: nothing sampled
    _server_and_children(tel)  # no processor to reach; must not raise
    exp = InMemorySpanExporter()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    tel = telemetry.build(span_exporter=exp)
    _server_and_children(tel)
    tel.tracer_provider.force_flush()
    assert exp.get_finished_spans() == ()


def test_recorded_child_spans_count_as_dropped_when_the_queue_is_full(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    exp = HangingExporter()
    tel = telemetry.build(span_exporter=exp)
    for _ in range(50):
        _server_and_children(tel)
    assert tel.drops.counts["spans"] >= 4 * 50 - 8 - 4
    assert tel.shutdown(timeout=1.0) is False
    exp.release.set()
