import ast
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from monitoring import names as N
from monitoring.metrics import BY_NAME, DEFINITIONS, Metrics


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


# -- the catalogue is the one list ---------------------------------------------------------

from tests.support.paths import ROOT  # noqa: E402


def test_metric_names_are_unique_and_every_m_constant_is_defined():
    assert len(BY_NAME) == len(DEFINITIONS)
    constants = {v for k, v in vars(N).items() if k.startswith("M_")}
    assert constants == set(BY_NAME)


def test_performance_metrics_are_one_catalogue_by_task():
    assert set(N.PERF_METRICS) == set(N.HIGHER_IS_BETTER) == {m for ms in N.TASK_METRICS.values() for m in ms}
    assert BY_NAME[N.M_PERF_REALIZED].labels[N.L_METRIC] == N.PERF_METRICS
    for m in N.PERFORMANCE_METRICS.values():
        assert m.task in N.TASK_METRICS
        assert m.lower is None or m.upper is None or m.lower < m.upper


def _literal_lists(path: Path, names: frozenset[str]) -> list[str]:
    """Tuple/list/set literals naming two or more performance metrics, and dict literals
    keyed by two or more of them with constant values (a table about the metrics, not a
    computation of them)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant) for v in node.values):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        hits = [e.value for e in items if isinstance(e, ast.Constant) and e.value in names]
        if len(hits) >= 2:
            out.append(f"{path.relative_to(ROOT)}:{node.lineno} {hits}")
    return out


def test_no_module_but_names_lists_the_performance_metrics():
    names = frozenset(N.PERF_METRICS)
    found = [hit for pkg in ("monitoring", "service", "models") for p in sorted((ROOT / pkg).rglob("*.py"))
             if p != ROOT / "monitoring/names.py" for hit in _literal_lists(p, names)]
    assert found == []
