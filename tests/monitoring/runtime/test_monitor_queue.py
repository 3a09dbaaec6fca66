import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitoring import names as N
from monitoring.metrics import Metrics
from monitoring.runtime.queue import MonitorItem, MonitorQueue
from monitoring.intake.validation import ValidatedBatch


def item(rows=3, rid="r"):
    b = ValidatedBatch(rows, np.zeros((rows, 2)), np.zeros((rows, 0), dtype=np.int32), {}, None)
    return MonitorItem(rid, time.time(), b, np.zeros(rows), None, np.zeros(rows, dtype=np.int32))


class Recorder:
    def __init__(self, gate: threading.Event | None = None, fail_first: bool = False):
        self.items = []
        self.gate = gate
        self.fail_first = fail_first

    def consume(self, items):
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("consumer bug")
        self.items.extend(items)


def sample(reg, name, **labels):
    return reg.get_sample_value(N.prometheus_name(name) + "_total", labels) or 0.0


def test_full_queue_drops_and_counts_without_blocking():
    reg = CollectorRegistry()
    metrics = Metrics(registry=reg)
    gate = threading.Event()
    rec = Recorder(gate)
    q = MonitorQueue(rec, maxsize=4, metrics=metrics).start()
    start = time.perf_counter()
    results = [q.offer(item(rid=str(i))) for i in range(50)]
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5  # 50 offers against a stuck consumer never wait on it
    accepted = sum(results)
    assert 4 <= accepted <= 5  # the capacity (+1 the thread may already hold)
    stats = q.stats()
    assert stats.dropped_rows == 3 * (50 - accepted)
    assert sample(reg, N.M_MONITOR_DROPPED) == stats.dropped_rows
    gate.set()
    assert q.close(timeout=5)
    assert len(rec.items) == accepted
    assert q.stats().processed_rows == 3 * accepted == sample(reg, N.M_MONITOR_PROCESSED)


def test_consumer_error_is_counted_and_draining_continues():
    rec = Recorder(fail_first=True)
    q = MonitorQueue(rec, maxsize=100).start()
    q.offer(item(rid="lost"))
    deadline = time.monotonic() + 10
    while q.stats().errors == 0 and time.monotonic() < deadline:  # the first batch failed alone
        time.sleep(0.005)
    q.offer(item(rid="kept"))
    assert q.close(timeout=5)
    assert q.stats().errors == 1
    assert [i.request_id for i in rec.items] == ["kept"]


def test_offer_after_close_is_dropped():
    q = MonitorQueue(Recorder(), maxsize=10).start()
    assert q.close(timeout=2)
    assert q.offer(item()) is False
    assert q.stats().dropped_rows == 3


def test_close_is_bounded_when_consumer_hangs():
    q = MonitorQueue(Recorder(threading.Event()), maxsize=2).start()  # the gate never opens
    for _ in range(5):
        q.offer(item())
    start = time.perf_counter()
    assert q.close(timeout=0.5) is False
    assert time.perf_counter() - start < 1.5


def test_arguments_checked():
    with pytest.raises(ValueError, match="maxsize"):
        MonitorQueue(Recorder(), maxsize=0)
