"""Per-window serving figures: latency histogram, errors, examples, CPU and memory."""

from __future__ import annotations

import threading

import pytest

from monitoring.stats.serving import EXAMPLES, LATENCY_BOUNDS, ServingSketch, ServingStats


def test_record_take_and_quantiles():
    s = ServingStats("w1")
    for i in range(98):
        s.record(200, 0.010, trace_id=f"ok{i}")
    s.record(500, 0.2, trace_id="boom")
    s.record(200, 1.5, trace_id="slow")
    s.record(404, 0.001)
    sk = s.take()
    assert (sk.requests, sk.server_errors, sk.client_errors, sk.answered) == (101, 1, 1, 100)
    assert 0.010 <= sk.quantile(0.5) <= 0.010 * 1.12
    assert sk.quantile(0.995) >= 1.5 and sk.quantile(0.99) >= 0.2
    assert [t for _, t in sk.slowest][:2] == ["slow", "boom"] and len(sk.slowest) == EXAMPLES
    assert sk.failed == ["boom"]
    assert sk.count_above(0.010) == 2 and sk.count_above(1.5) == 0
    assert s.take().empty  # taking resets


def test_sketches_merge_exactly_and_survive_json():
    a, b = ServingStats("a"), ServingStats("b")
    for v in (0.001, 0.02, 0.3):
        a.record(200, v, "x")
        b.record(503, v * 2, "y")
    a.note_system(0.5, 100.0)
    a.note_system(1.5, 300.0)
    b.note_system(1.0, 200.0)
    merged = ServingSketch.from_dict(a.take().to_dict()).merge(ServingSketch.from_dict(b.take().to_dict()))
    assert merged.requests == 6 and merged.server_errors == 3 and merged.answered == 6
    assert merged.cpu_cores == pytest.approx(1.0 + 1.0)       # mean per worker, summed over workers
    assert merged.memory_bytes == pytest.approx(300.0 + 200.0)  # peak per worker, summed
    assert merged.summary()["error_rate"] == 0.5


def test_concurrent_records_are_all_counted():
    s = ServingStats()

    def work():
        for _ in range(2000):
            s.record(200, 0.005)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert s.take().requests == 8000


def test_bounds_cover_100us_to_minutes():
    assert LATENCY_BOUNDS[0] == pytest.approx(1e-4) and LATENCY_BOUNDS[-1] > 120
    sk = ServingSketch()
    sk.latency[-1] = 1  # beyond the last bound
    assert sk.quantile(0.5) == float("inf")
