"""Windows numbered by the store, merged across workers, sealed by time, resilient to the
store going away. Runs on SQLite, and on Postgres when VIGIL_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from models.frames import frame_to_columns
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
from monitoring.runtime.queue import MonitorItem
from monitoring.store import Store, StoreUnavailable
from monitoring.intake.validation import ValidatedBatch
from monitoring.runtime.windows import WindowConfig, WindowManager
from tests.support import synth



@pytest.fixture(scope="module")
def ref():
    return synth.reference(np.random.default_rng(0), 3000)


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def items_from(schema, df, t: float, size: int):
    num, codes = frame_to_columns(df, schema)
    out = []
    for i in range(0, len(df), size):
        n = min(size, len(df) - i)
        b = ValidatedBatch(n, num[i:i + n], codes[i:i + n], {}, None)
        out.append(MonitorItem(uuid.uuid4().hex, t, b, np.zeros(n), None, None))
    return out


class Recorded:
    """A WindowManager whose closed windows are collected as the monitor receives them:
    ``reports`` (typed reports) and ``stored`` (what the views and alert rules read)."""

    def __init__(self, m: WindowManager):
        self.m = m
        self.reports: list = []
        self.stored: list[dict] = []

    def _keep(self, closed):
        for w in closed:
            self.reports.append(w.report)
            self.stored.append(w.stored)
        return closed

    def consume(self, items):
        return self._keep(self.m.consume(items))

    def tick(self):
        return self._keep(self.m.tick())

    def flush(self):
        return self._keep(self.m.flush())

    def __getattr__(self, name):
        return getattr(self.m, name)


def manager(store, ref, model, clock=None, *, window_rows=500, window_seconds=3600, stale_seconds=None,
            max_pending_rows=100_000, **kw):
    schema, prof = ref
    config = WindowConfig(window_rows, window_seconds, stale_seconds=stale_seconds, flush_interval=0,
                          max_pending_rows=max_pending_rows)
    m = Recorded(WindowManager(store, model, WindowEvaluator(schema, prof, DriftConfig()), config,
                               clock=clock or Clock(), **kw))
    return m, m.reports


def test_two_workers_fill_shared_windows_exactly(store, ref):
    schema, prof = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(1)
    a, ra = manager(store, ref, model)
    b, rb = manager(store, ref, model)
    df = synth.frame(rng, 2500)
    batches = items_from(schema, df, 1_000_000.0, 37)
    for i, item in enumerate(batches):
        (a if i % 2 else b).consume([item])
    a.tick()
    b.tick()
    reports = sorted(ra + rb, key=lambda r: r.window_id)
    assert [r.window_id for r in reports] == [0, 1, 2, 3, 4]  # each window evaluated exactly once
    assert all(r.rows == 500 for r in reports)
    records = store.windows.recent(model)
    assert [r.window_id for r in records] == [4, 3, 2, 1, 0] and all(r.report["complete"] for r in records)
    assert sum(r.rows for r in records) == 2500  # no row lost or counted twice across workers


def test_partials_merge_to_the_single_worker_counts(store, ref):
    schema, prof = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    a, _ = manager(store, ref, model, window_rows=1000)
    b, _ = manager(store, ref, model, window_rows=1000)
    df = synth.frame(np.random.default_rng(2), 600)
    items = items_from(schema, df, 1_000_000.0, 50)
    a.consume(items[::2])
    b.consume(items[1::2])
    from monitoring.stats.profile import Profile

    merged = prof.empty_like()
    for p in store.windows.partials(model, 0):
        merged = merged.merge(Profile.from_dict(p.sketch))
    direct = synth.window(schema, prof, df)
    for name in synth.NUMERIC + synth.CATEGORICAL:
        sk = merged.numeric.get(name) or merged.categorical[name]
        dk = direct.numeric.get(name) or direct.categorical[name]
        assert sk.counts.tolist() == dk.counts.tolist()


def test_a_window_is_sealed_by_time(store, ref):
    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    m, reports = manager(store, ref, model, clock=clock, window_rows=1000, window_seconds=60)
    m.consume(items_from(schema, synth.frame(np.random.default_rng(3), 120), clock.t, 40))
    m.tick()
    assert reports == []
    clock.t += 61
    m.tick()
    assert len(reports) == 1 and reports[0].rows == 120 and reports[0].window_id == 0
    assert store.windows.recent(model)[0].rows_expected == 120
    # the next rows start the next window
    m.consume(items_from(schema, synth.frame(np.random.default_rng(4), 10), clock.t, 10))
    assert m.state().open_windows == (1,)


def test_store_outage_buffers_then_resumes(store, ref):
    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    m, reports = manager(store, ref, model, window_rows=200, max_pending_rows=300)
    real = store.windows.reserve_rows
    down = {"on": True}

    def flaky(*a, **kw):
        if down["on"]:
            raise StoreUnavailable("OperationalError: connection refused")
        return real(*a, **kw)

    store.windows.reserve_rows = flaky
    rng = np.random.default_rng(5)
    m.consume(items_from(schema, synth.frame(rng, 250), 1_000_000.0, 50))
    st = m.state()
    assert st.store_errors >= 1 and st.pending_rows == 250 and "OperationalError" in st.last_error
    m.consume(items_from(schema, synth.frame(rng, 100), 1_000_000.0, 50))  # over the bound: dropped, counted
    assert m.state().pending_rows == 300 and m.state().buffered_dropped_rows == 50
    down["on"] = False
    m.tick()
    assert [r.window_id for r in reports] == [0] and reports[0].rows == 200
    assert m.state().pending_rows == 0 and m.state().last_error is None


def test_a_dead_workers_rows_do_not_block_forever(store, ref):
    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    m, reports = manager(store, ref, model, clock=clock, window_rows=100, stale_seconds=30)
    store.windows.reserve_rows(f"rows:{model}", 40)  # a worker reserved 40 rows and died before flushing
    m.consume(items_from(schema, synth.frame(np.random.default_rng(6), 100), clock.t, 20))
    m.tick()
    assert reports == []  # window 0 waits for the missing 40 rows
    clock.t += 31
    m.tick()
    assert [r.window_id for r in reports] == [0]
    rec = store.windows.recent(model)[-1]
    assert rec.rows == 60 and rec.report["complete"] is False


def test_history_survives_a_new_store_object(store, ref):
    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    m, _ = manager(store, ref, model, window_rows=100)
    m.consume(items_from(schema, synth.frame(np.random.default_rng(7), 200), 1_000_000.0, 100))
    again = Store(store.url)
    assert [r.window_id for r in again.windows.recent(model)] == [1, 0]
    assert again.windows.counter(f"rows:{model}") == 200
    again.dispose()


def test_rejections_are_counted_in_the_window(store, ref):
    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    m, reports = manager(store, ref, model, window_rows=50)
    m.note_rejection("wrong_type")
    m.note_rejection("wrong_type")
    m.note_rejection("missing_feature")
    m.consume(items_from(schema, synth.frame(np.random.default_rng(8), 50), 1_000_000.0, 50))
    assert reports[0].rejected == {"wrong_type": 2, "missing_feature": 1}


# -- serving figures travel with the windows ------------------------------------------

def test_serving_figures_of_every_worker_reach_the_window_report(store, ref):
    from monitoring.stats.serving import ServingStats

    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    stats = [ServingStats(f"w{i}") for i in range(2)]
    workers = [manager(store, ref, model, clock, window_rows=200, serving=stats[i])[0]
               for i in range(2)]
    df = synth.frame(np.random.default_rng(1), 400)
    for i, w in enumerate(workers):
        for k in range(50):
            stats[i].record(200, 0.010 + 0.001 * i, trace_id=f"{i:02d}{k:030d}")
        stats[i].record(500, 0.5, trace_id=f"{i:02d}" + "f" * 30)
        stats[i].record(422, 0.001)
        stats[i].note_system(0.5, 1e8 * (i + 1))
        w.consume(items_from(schema, df.iloc[i * 100:(i + 1) * 100], clock.t, 50))
    for w in workers:
        w.flush()
    seen = [d for w in workers for d in w.stored]
    (rep,) = [r for r in seen if r["window_id"] == 0]
    sv = rep["serving"]
    assert sv["requests"] == 104 and sv["server_errors"] == 2 and sv["client_errors"] == 2
    assert sv["error_rate"] == pytest.approx(2 / 104)
    assert 0.010 <= sv["latency_p50"] <= 0.012 * 1.12 and sv["latency_p99"] >= 0.5
    assert sv["cpu_cores"] == pytest.approx(1.0) and sv["memory_bytes"] == pytest.approx(3e8)
    assert sorted(sv["failed_traces"]) == ["00" + "f" * 30, "01" + "f" * 30]
    assert len(sv["slowest_traces"]) == 5 and set(sv["slowest_traces"][:2]) == set(sv["failed_traces"])


def test_a_window_of_failed_requests_only_still_closes(store, ref):
    """All requests failing means no rows reach the monitor; the window still closes by
    time so that an error-rate alert can see it."""
    from monitoring.stats.serving import ServingStats

    model = f"m-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    stats = ServingStats("w")
    m, _ = manager(store, ref, model, clock, window_rows=100, window_seconds=10, serving=stats)
    seen = m.stored
    for _ in range(20):
        stats.record(500, 0.02, trace_id="a" * 32)
    m.flush()
    clock.t += 11
    m.flush()
    m.flush()
    (rep,) = seen
    assert rep["rows"] == 0 and rep["too_small"] and rep["serving"]["server_errors"] == 20
    assert rep["serving"]["error_rate"] == 1.0


def test_only_recent_windows_keep_their_sketch(store, ref, monkeypatch):
    import monitoring.store.windows as S

    monkeypatch.setattr(S, "KEEP_SKETCHES", 2)
    schema, _ = ref
    model = f"m-{uuid.uuid4().hex[:8]}"
    m, reports = manager(store, ref, model, window_rows=100)
    m.consume(items_from(schema, synth.frame(np.random.default_rng(2), 600), m.clock(), 100))
    m.flush()
    assert len(reports) == 6
    kept = [w for w in range(6) if store.windows.sketch(model, w)[0] is not None]
    assert kept == [3, 4, 5]
    assert all(store.windows.sketch(model, w)[1] is not None for w in range(6))  # reports stay
