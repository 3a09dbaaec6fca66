"""Self-check for tests/support/phoenix.py (not collected by pytest).

Starts a real Phoenix, sends one span over OTLP/HTTP and a parent/child pair over
OTLP/gRPC with the OpenTelemetry SDK, plus one span into a named project, and checks that
everything is read back with its attributes. Run from the repo root with Vigil's venv:

    .venv/bin/python tests/support/check_phoenix.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.support.phoenix import phoenix_available, run_phoenix


def _provider(exporter, **resource_attrs) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "vigil-phoenix-check", **resource_attrs})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def main() -> int:
    reason = phoenix_available()
    if reason:
        print(f"SKIP: {reason}")
        return 1

    with tempfile.TemporaryDirectory(prefix="vigil-phoenix-") as tmp:
        t0 = time.monotonic()
        with run_phoenix(Path(tmp)) as phx:
            print(f"Phoenix ready in {time.monotonic() - t0:.1f} s at {phx.http_endpoint}")
            print(
                f"  OTLP/HTTP {phx.otlp_http_traces_endpoint}  OTLP/gRPC {phx.otlp_grpc_endpoint}"
            )

            # 1. One span over OTLP/HTTP.
            http_tp = _provider(HttpSpanExporter(endpoint=phx.otlp_http_traces_endpoint))
            with http_tp.get_tracer("check").start_as_current_span("predict-http") as span:
                span.set_attribute("vigil.model.name", "iris")
                span.set_attribute("vigil.batch_size", 4)
                span.set_attribute("vigil.latency_ms", 1.5)
                span.set_attribute("vigil.cached", False)
                span.set_attribute("vigil.labels", ["a", "b"])
            http_trace = format(span.get_span_context().trace_id, "032x")
            http_span = format(span.get_span_context().span_id, "016x")
            http_tp.shutdown()

            # 2. A parent and a child over OTLP/gRPC (child marks an error).
            grpc_tp = _provider(GrpcSpanExporter(endpoint=phx.otlp_grpc_endpoint, insecure=True))
            tracer = grpc_tp.get_tracer("check")
            with tracer.start_as_current_span("predict-grpc") as parent:
                parent.set_attribute("vigil.model.name", "grpc-model")
                with tracer.start_as_current_span("preprocess") as child:
                    child.set_attribute("vigil.step", "scale")
                    child.set_status(Status(StatusCode.ERROR, "boom"))
            grpc_trace = format(parent.get_span_context().trace_id, "032x")
            parent_id = format(parent.get_span_context().span_id, "016x")
            child_id = format(child.get_span_context().span_id, "016x")
            grpc_tp.shutdown()

            # 3. A span routed to a named project via the openinference resource attribute.
            proj_tp = _provider(
                HttpSpanExporter(endpoint=phx.otlp_http_traces_endpoint),
                **{"openinference.project.name": "vigil-e2e"},
            )
            with proj_tp.get_tracer("check").start_as_current_span("in-project") as pspan:
                pspan.set_attribute("vigil.where", "project")
            proj_trace = format(pspan.get_span_context().trace_id, "032x")
            proj_tp.shutdown()

            t1 = time.monotonic()
            (got_http,) = phx.wait_for_spans(http_trace, 1, timeout=30)
            got_grpc = phx.wait_for_spans(grpc_trace, 2, timeout=30)
            (got_proj,) = phx.wait_for_spans(proj_trace, 1, timeout=30, project="vigil-e2e")
            print(f"All spans readable {time.monotonic() - t1:.2f} s after export returned")

            assert got_http["name"] == "predict-http", got_http
            assert got_http["trace_id"] == http_trace
            assert got_http["span_id"] == http_span
            assert got_http["parent_id"] is None
            attrs = got_http["attributes"]
            assert attrs["vigil.model.name"] == "iris", attrs
            assert attrs["vigil.batch_size"] == 4, attrs
            assert attrs["vigil.latency_ms"] == 1.5, attrs
            assert attrs["vigil.cached"] is False, attrs
            assert attrs["vigil.labels"] == ["a", "b"], attrs
            assert "service.name" not in attrs  # resource attributes are not returned

            by_name = {s["name"]: s for s in got_grpc}
            assert set(by_name) == {"predict-grpc", "preprocess"}, by_name
            assert by_name["predict-grpc"]["span_id"] == parent_id
            assert by_name["predict-grpc"]["parent_id"] is None
            assert by_name["predict-grpc"]["attributes"]["vigil.model.name"] == "grpc-model"
            assert by_name["preprocess"]["span_id"] == child_id
            assert by_name["preprocess"]["parent_id"] == parent_id
            assert by_name["preprocess"]["attributes"] == {"vigil.step": "scale"}
            assert by_name["preprocess"]["status_code"] == "ERROR"
            assert by_name["preprocess"]["status_message"] == "boom"

            assert got_proj["attributes"] == {"vigil.where": "project"}
            assert phx.spans(proj_trace) == []  # not in "default"
            assert {"default", "vigil-e2e"} <= set(phx.projects())
            assert len(phx.spans()) == 3  # everything in "default"

            process = phx.process
        assert process.poll() is not None, "Phoenix still running after context exit"
        print(f"Phoenix stopped (exit code {process.returncode})")
    print("OK: OTLP/HTTP and OTLP/gRPC spans read back from Phoenix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
