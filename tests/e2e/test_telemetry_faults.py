"""Telemetry never stalls serving. Fault: the OTLP endpoint refuses connections, or accepts
them and never answers (a blackhole). Load: 200 sequential predictions with every request
traced. Bounds are coarse (>= 3x margin); the req/s and p99 ratios belong to benchmarks/.
Lost: telemetry only, and every lost span is counted (exactly: dropped == offered)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.e2e.test_serve import metric
from tests.support.server import free_port, serve, stop

pytestmark = pytest.mark.e2e
SHUTDOWN_BOUND = 8.0


class Blackhole:
    """Accepts TCP connections and reads forever without answering."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)  # never read to completion, never answered

    def close(self):
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("fault", ["refused", "blackhole"])
def test_dead_or_stalled_backend_never_stalls_requests(tmp_path, demo_tags, demo_rows, fault):
    hole = Blackhole() if fault == "blackhole" else None
    port = hole.port if hole else free_port()  # nothing listens on a fresh free port
    env = {"VIGIL_MODEL": demo_tags["classifier"], "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
           "OTEL_BSP_MAX_QUEUE_SIZE": "64", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
           "OTEL_BSP_SCHEDULE_DELAY": "100", "VIGIL_OTEL_EXPORT_TIMEOUT": "0.5"}
    try:
        with serve(tmp_path, env) as server, server.client() as c:
            slowest = 0.0
            t0 = time.perf_counter()
            for i in range(200):
                t = time.perf_counter()
                r = c.post("/predict", json={"instances": demo_rows[i % 50: i % 50 + 1]})
                slowest = max(slowest, time.perf_counter() - t)
                assert r.status_code == 200
            total = time.perf_counter() - t0
            # nothing reaches the backend, so every span offered for export must end up dropped
            # and counted: wait until the counts meet. Each status request's own spans are offered
            # as it ends, and a failing export holds a batch for the 0.5 s export timeout: polls
            # are spaced further apart than that, so the previous poll's spans are counted by the next
            deadline = time.monotonic() + 30
            while True:
                status = c.get("/monitoring/status").json()
                tel = status["telemetry"]
                if tel["dropped"]["spans"] >= tel["spans_ended"] or time.monotonic() > deadline:
                    break
                time.sleep(1.5)
            dropped = metric(c.get("/metrics").text, "vigil_telemetry_dropped_total", signal="spans")
            took = stop(server.proc, timeout=30)
        print(f"{fault}: slowest request {slowest * 1000:.0f} ms, 200 requests in {total:.1f} s, "
              f"{tel['spans_ended']} spans offered, {tel['dropped']['spans']} dropped and counted, "
              f"shutdown {took:.1f} s")
        assert slowest < 1.0, f"a request waited {slowest:.2f}s on telemetry"  # normal: ~10-30 ms
        assert total < 40
        assert tel["spans_ended"] >= 3 * 200  # each prediction's server, validate and model spans at least
        assert tel["dropped"]["spans"] == tel["spans_ended"]  # every lost span counted, none twice
        assert dropped >= tel["dropped"]["spans"]  # and exported as a metric (later requests' spans too)
        assert status["monitor_queue"]["dropped_rows"] == 0  # serving and monitoring unaffected
        # VIGIL_SHUTDOWN_TIMEOUT (4 s) bounds the monitor and telemetry flush; the rest is BentoML
        # stopping its worker and supervisor
        assert took < SHUTDOWN_BOUND, f"shutdown took {took:.1f}s"
    finally:
        if hole:
            hole.close()
