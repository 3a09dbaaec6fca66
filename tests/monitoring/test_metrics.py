from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from monitoring import names as N
from monitoring.metrics import DEFINITIONS, Metrics


def otel_points(reader):
    out = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    out[(m.name, tuple(sorted(p.attributes.items())))] = p
    return out


def test_each_definition_feeds_otel_and_prometheus():
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    reg = CollectorRegistry()
    m = Metrics(meter=meter, registry=reg)
    m[N.M_REQUESTS].add(2, endpoint="predict", outcome="ok")
    m[N.M_REQUEST_DURATION].record(0.003, endpoint="predict", outcome="ok")
    m[N.M_MONITOR_QUEUE_DEPTH].set(7)
    pts = otel_points(reader)
    assert pts[(N.M_REQUESTS, (("endpoint", "predict"), ("outcome", "ok")))].value == 2
    assert pts[(N.M_REQUEST_DURATION, (("endpoint", "predict"), ("outcome", "ok")))].count == 1
    assert pts[(N.M_MONITOR_QUEUE_DEPTH, ())].value == 7
    assert reg.get_sample_value("vigil_requests_total", {"endpoint": "predict", "outcome": "ok"}) == 2
    assert reg.get_sample_value("vigil_request_duration_count", {"endpoint": "predict", "outcome": "ok"}) == 1
    assert reg.get_sample_value("vigil_monitor_queue_depth") == 7
    # every definition is registered on both sides
    names = {mf.name for mf in reg.collect()}
    for d in DEFINITIONS:
        assert d.prometheus_name in names


def test_label_values_are_bounded():
    reg = CollectorRegistry()
    m = Metrics(registry=reg)
    for i in range(500):
        m[N.M_VALIDATION_ERRORS].add(1, kind=f"user-controlled-{i}")
    kinds = {s.labels["kind"] for mf in reg.collect() if mf.name == "vigil_validation_errors" for s in mf.samples
             if s.name.endswith("_total")}
    assert kinds == {"other"}
    assert reg.get_sample_value("vigil_validation_errors_total", {"kind": "other"}) == 500
