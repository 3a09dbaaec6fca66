"""Telemetry never stalls serving. Fault: the OTLP endpoint refuses connections, or accepts
them and never answers (a blackhole). Load: 200 sequential predictions with every request
traced. Bounds are coarse (>= 3x margin); the req/s and p99 ratios belong to benchmarks/.
Lost: telemetry only, and every lost span is counted."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.e2e.test_serve import metric
from tests.support.server import free_port, serve, stop

pytestmark = pytest.mark.e2e


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
           "OTEL_BSP_SCHEDULE_DELAY": "100", "VIGIL_OTEL_EXPORT_TIMEOUT": "2"}
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
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                dropped = metric(c.get("/metrics").text, "vigil_telemetry_dropped_total", signal="spans")
                if dropped > 0:
                    break
                time.sleep(0.5)
            status = c.get("/monitoring/status").json()
            took = stop(server.proc, timeout=30)
        print(f"{fault}: slowest request {slowest * 1000:.0f} ms, 200 requests in {total:.1f} s, "
              f"{dropped:.0f} spans dropped and counted, shutdown {took:.1f} s")
        assert slowest < 1.0, f"a request waited {slowest:.2f}s on telemetry"  # normal: ~10-30 ms
        assert total < 40
        assert dropped > 0 and status["telemetry"]["dropped"]["spans"] > 0  # lost, and counted
        assert status["monitor_queue"]["dropped_rows"] == 0  # serving and monitoring unaffected
        assert took < 15, f"shutdown took {took:.1f}s"  # VIGIL_SHUTDOWN_TIMEOUT bounds our part to 4 s
    finally:
        if hole:
            hole.close()
