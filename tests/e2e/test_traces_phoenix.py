"""End-to-end: traces from a served Vigil reach a real OTLP backend (Arize Phoenix).

Phoenix lives in ``.venv-phoenix``, which ``make test`` creates. Without it this test
fails (it does not skip): the trace pipeline is a promise the suite must check.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.support.server import serve

pytestmark = pytest.mark.e2e




# Both places /predict can run (service/inline.py): on the event loop once the model is
# known to be fast, and in the thread pool (VIGIL_INLINE_PREDICT_MS=0), one per protocol.
@pytest.mark.parametrize("protocol,dispatch", [("http/protobuf", "inline"), ("grpc", "thread_pool")])
def test_request_trace_reaches_backend_with_our_child_spans(phoenix, tmp_path, demo_tags, demo_rows, protocol,
                                                            dispatch):
    endpoint = phoenix.http_endpoint if protocol == "http/protobuf" else phoenix.otlp_grpc_endpoint
    env = {"VIGIL_MODEL": demo_tags["classifier"], "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_METRICS_EXPORTER": "none",
           "OTEL_BSP_SCHEDULE_DELAY": "200"}
    if dispatch == "thread_pool":
        env["VIGIL_INLINE_PREDICT_MS"] = "0"
    with serve(tmp_path, env) as server, server.client() as c:
        for _ in range(25):  # past the policy's warm-up, with batches like the traced one
            assert c.post("/predict", json={"instances": demo_rows[:5]}).status_code == 200
        before = c.get("/monitoring/status").json()["predict_dispatch"]
        r = c.post("/predict", json={"instances": demo_rows[:5]})
        assert r.status_code == 200, r.text
        after = c.get("/monitoring/status").json()["predict_dispatch"]
        key = "inline_calls" if dispatch == "inline" else "thread_pool_calls"
        assert after[key] == before[key] + 1, (before, after)
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", r.headers["traceparent"])
        assert m and int(m.group(3), 16) & 1, "every request is sampled when an endpoint is set"
        trace_id = m.group(1)
        assert trace_id != "0" * 32
        wanted = {"vigil.validate", "vigil.model.predict", "vigil.monitor.enqueue"}
        for _ in range(100):  # the backend ingests with a lag; wait for all of ours and the root
            spans = phoenix.wait_for_spans(trace_id, min_count=4, timeout=60)
            if wanted <= {s["name"] for s in spans} and any(s["parent_id"] is None for s in spans):
                break
            time.sleep(0.3)

    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    assert all(s["trace_id"] == trace_id for s in spans)
    # BentoML's ASGI server span is the root; ours are its children, in one trace
    roots = [s for s in spans if s["parent_id"] is None]
    assert len(roots) == 1 and "/predict" in roots[0]["name"]
    server_span = roots[0]
    for name in ("vigil.validate", "vigil.model.predict", "vigil.monitor.enqueue"):
        assert name in by_name, f"{name} missing from {sorted(by_name)}"
        span = by_name[name][0]
        assert span["parent_id"] == server_span["span_id"], f"{name} is not a child of the server span"
        attrs = span["attributes"]
        assert attrs["vigil.model.name"] == "vigil-demo-classifier"
        assert attrs["vigil.model.version"] == demo_tags["classifier"].split(":")[1]
    assert by_name["vigil.validate"][0]["attributes"]["vigil.request.rows"] == 5
    assert by_name["vigil.model.predict"][0]["attributes"]["vigil.outcome"] == "ok"
    assert by_name["vigil.monitor.enqueue"][0]["attributes"]["vigil.monitor.accepted"] is True
    assert server_span["attributes"]["vigil.request.id"] == r.json()["request_id"]
    assert server_span["attributes"]["vigil.request.rows"] == 5
