"""ModelMonitor in process (no BentoML, no threads started): the composition root turns
served rows into closed windows, gauges and alert state, serves its views, and refuses
operator actions that name what the model lacks."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from monitoring.config import load_settings
from monitoring.intake.validation import ValidatedBatch
from monitoring.runtime.monitor import ActionInvalid, ActionNotFound, ModelInfo, ModelMonitor
from monitoring.runtime.queue import MonitorItem
from monitoring.stats.results import PerformanceResult
from models.frames import frame_to_columns
from tests.support import synth


@pytest.fixture(scope="module")
def info():
    rng = np.random.default_rng(0)
    schema, prof = synth.reference(rng, 3000)
    y = rng.normal(size=500)
    return ModelInfo(tag=f"synth-{uuid.uuid4().hex[:8]}:v1", name="synth", version="v1", schema=schema,
                     profile=prof, validation=(y, y + rng.normal(0, 0.1, size=500), None))


@pytest.fixture
def monitor(info, tmp_path):
    settings = load_settings(environ={}, data_dir=tmp_path, window_rows=200, window_seconds=3600,
                             performance_interval=0.001, log_sample_rate=1.0)
    m = ModelMonitor(settings, info)
    yield m
    m.store.dispose()


def items(schema, df, per_item=50):
    num, codes = frame_to_columns(df, schema)
    out = []
    for i in range(0, len(df), per_item):
        n = min(per_item, len(df) - i)
        batch = ValidatedBatch(n, num[i:i + n], codes[i:i + n], {}, None)
        out.append(MonitorItem(uuid.uuid4().hex, time.time(), batch, np.zeros(n), None, None))
    return out


def test_served_rows_become_judged_windows_in_the_views(monitor, info):
    rng = np.random.default_rng(1)
    monitor.consume(items(info.schema, synth.frame(rng, 200)))
    monitor.consume(items(info.schema, synth.frame(rng, 200, shift=1.0)))
    monitor.tick()
    windows = monitor.drift(limit=10)["windows"]
    assert [w["window_id"] for w in windows] == [1, 0]  # newest first
    assert set(windows[0]["drifted"]) >= set(synth.SHIFTED_NUMERIC) and windows[1]["drifted"] == []
    status = monitor.status()
    assert status["windows"]["store"] == "ok" and status["windows"]["rows_counted"] == 400
    assert status["windows"]["last_closed"]["window_id"] == 1
    # the published gauge and the alert engine saw the same window
    assert monitor.metrics is not None and monitor.alert_engine.errors == 0


def test_scored_performance_comes_back_typed_and_stored(monitor, info):
    rng = np.random.default_rng(2)
    batch = items(info.schema, synth.frame(rng, 200), per_item=200)
    monitor.consume(batch)  # a full window: flushed, closed and evaluated at once
    results = monitor.tracker.tick(force=True)
    assert results and all(isinstance(r, PerformanceResult) for r in results)
    (r,) = [r for r in results if r.window_id == 0]
    assert (r.predictions, r.labelled, r.final) == (200, 0, False) and r.stored["window_id"] == 0
    assert monitor.performance(limit=5)["windows"][0]["window_id"] == 0


def test_operator_actions_refuse_what_the_model_lacks(monitor):
    with pytest.raises(ActionInvalid, match="rule must be"):
        monitor.silence("no_such_rule", 60)
    with pytest.raises(ActionNotFound, match="no active silence 12345"):
        monitor.unsilence(12345)
    with pytest.raises(ActionNotFound, match="not one of the last"):
        monitor.rebaseline(999)
    rule = next(iter(monitor.alert_engine.rules))
    with pytest.raises(ActionNotFound, match="no firing alert"):
        monitor.acknowledge(rule)
    s = monitor.silence("*", 60, reason="deploy", by="ops")
    assert s["until_iso"].endswith("Z") and s["until_iso"][:19] == time.strftime("%Y-%m-%dT%H:%M:%S",
                                                                                  time.gmtime(int(s["until"])))
    assert monitor.unsilence(s["id"]) == {"id": s["id"], "ended": True}


def test_an_open_window_with_every_row_labelled_is_not_final_until_it_closes(monitor, info):
    """Two rows of a 200-row window, both labelled: coverage 100 %, yet the window still takes
    rows, so its performance is not final (it read ``final: true``); once the window closes
    with its rows labelled, it is."""
    from monitoring.intake.outcomes import parse_outcomes

    rng = np.random.default_rng(3)

    def serve_and_label(n):
        (item,) = items(info.schema, synth.frame(rng, n), per_item=n)
        rid = monitor.request_ids.issue(n)
        item = MonitorItem(rid, item.received_at, item.batch, item.labels, None, None)
        monitor.consume([item])
        monitor.windows.flush()
        now = time.time()
        outcomes = parse_outcomes([{"request_id": rid, "index": i, "outcome": 0.0} for i in range(n)], info.schema,
                                  10_000, now, request_ids=monitor.request_ids)
        monitor.store.outcomes.ingest(monitor.tag, outcomes, now)

    serve_and_label(2)
    (early,) = monitor.tracker.tick(force=True)
    assert (early.window_id, early.labelled, early.coverage) == (0, 2, 1.0)
    assert early.final is False and early.stored["open"] is True
    assert monitor.performance(limit=5)["windows"][0]["final"] is False

    serve_and_label(198)  # the window fills and is evaluated
    monitor.tick()  # evaluates the window, then scores it
    done = monitor.performance(limit=5)["windows"][0]
    assert (done["window_id"], done["labelled"], done["final"]) == (0, 200, True) and "open" not in done


def test_status_says_how_far_the_open_window_is_and_what_the_drift_alert_needs(monitor, info):
    rng = np.random.default_rng(4)
    monitor.consume(items(info.schema, synth.frame(rng, 50)))
    monitor.windows.flush()
    s = monitor.status()
    assert s["summary"] == "no window evaluated yet" and s["progress"].startswith("window 0: 50/200 rows, closes at ")
    open_window = s["windows"]["open_window"]
    assert open_window["closes_by"] == "time" and open_window["closes_at"] == open_window["started_at"] + 3600
    assert open_window["closes_at_iso"].endswith("Z") and open_window["line"] == s["progress"]
    need = monitor.alert_engine.rules["feature_drift"].rule.for_windows
    signal = s["windows"]["first_signal"]
    assert signal["drift_alert_windows"] == need and signal["alert_possible_from_window"] == need - 1
    assert f"needs {need} drifted window" in signal["line"]
    drift = monitor.drift(limit=5)  # no window yet: the view says why, and when that changes
    assert drift["windows"] == [] and drift["summary"] == "no window evaluated yet"
    assert drift["progress"].startswith("window 0: 50/200 rows") and drift["first_signal"] == signal["line"]
    monitor.consume(items(info.schema, synth.frame(rng, 150, shift=1.0)))
    monitor.tick()
    s = monitor.status()
    assert s["summary"].startswith("drifted in the last window (0): ") and s["progress"].startswith("window 1: 0/200")
    assert s["windows"]["last_closed"]["ended_at_iso"].endswith("Z")
