"""Drift impact and DLE through the composition root (no BentoML, no threads): a model
stored with importance gets each window's features ranked by impact in its stored report;
a regressor stored with loss models gets estimated MAE/MSE/RMSE beside the realized ones;
a performance alert's evidence lists the window's features by impact."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from monitoring.alerts import DerivedRule, RuleContext, RuleSpec
from monitoring.alerts.gauges import publish_performance
from monitoring.config import load_settings
from monitoring.runtime.alert_engine import AlertEngine, AlertOptions
from monitoring.runtime.monitor import ModelInfo, ModelMonitor
from monitoring.stats.dle import Dle
from monitoring.store import Store
from tests.monitoring.runtime.test_monitor import items
from tests.support import synth


@pytest.fixture(scope="module")
def info():
    rng = np.random.default_rng(0)
    schema, prof = synth.reference(rng, 3000, multivariate=False)
    val = synth.frame(rng, 600)
    y = val["x2"].to_numpy() + rng.normal(0, 0.5, 600) * (1 + (val["x5"].to_numpy() > 0))
    pred = np.zeros(600)
    features = {n: val[n].to_numpy() for n in synth.NUMERIC} | {n: val[n].to_numpy(dtype=object)
                                                                 for n in synth.CATEGORICAL}
    importance = {n: 0.01 for n in schema.names} | {"x5": 1.0, "x2": 0.2}
    return ModelInfo(tag=f"insight-{uuid.uuid4().hex[:8]}:v1", name="insight", version="v1", schema=schema,
                     profile=prof, validation=(y, pred, None), importance=importance,
                     dle=Dle(features, y, pred, categorical=synth.CATEGORICAL, seed=0))


@pytest.fixture
def monitor(info, tmp_path):
    settings = load_settings(environ={}, data_dir=tmp_path, window_rows=200, window_seconds=3600,
                             performance_interval=0.001, log_sample_rate=1.0)
    m = ModelMonitor(settings, info)
    yield m
    m.store.dispose()


def test_a_window_ranks_its_drifted_features_by_impact_beside_the_raw_score(monitor, info):
    monitor.consume(items(info.schema, synth.frame(np.random.default_rng(1), 200, shift=1.0), per_item=200))
    (w,) = monitor.drift(limit=5)["windows"]
    ranking = w["impact_ranking"]
    # x2, x5, x8, x11, x14 all shifted alike; the model leans on x5, then x2
    assert [r["feature"] for r in ranking[:2]] == ["x5", "x2"]
    by_name = {f["feature"]: f for f in w["features"]}
    assert by_name["x8"]["flagged"] and by_name["x8"]["impact"] < by_name["x2"]["impact"]
    assert ranking[0]["score"] == by_name["x5"]["score"]


def test_a_regressor_window_carries_estimated_mae_mse_rmse_from_logged_features(monitor, info):
    monitor.consume(items(info.schema, synth.frame(np.random.default_rng(2), 200), per_item=200))
    (r,) = [r for r in monitor.tracker.tick(force=True) if r.window_id == 0]
    assert set(r.estimated) == {"mae", "mse", "rmse"}
    assert r.stored["estimated_by"] == {"method": "dle", "inputs": "features", "rows": 200}
    mae = r.estimated["mae"]
    assert mae["value"] > 0 and 0 < mae["se"] < mae["value"]
    assert monitor.performance(limit=5)["windows"][0]["estimated"]["mae"] == mae
    publish_performance(monitor.metrics, r.stored)  # the estimated gauge takes regression metrics too


def test_without_logged_features_the_estimate_reads_the_predictions_alone(info, tmp_path):
    settings = load_settings(environ={}, data_dir=tmp_path, window_rows=200, window_seconds=3600,
                             log_sample_rate=0.0)
    m = ModelMonitor(settings, info)
    try:
        m.consume(items(info.schema, synth.frame(np.random.default_rng(3), 200), per_item=200))
        (r,) = m.tracker.tick(force=True)
        assert r.stored["estimated_by"]["inputs"] == "prediction"
    finally:
        m.store.dispose()


def test_a_performance_alert_lists_the_windows_features_by_impact(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'v.db'}")
    ranking = [{"feature": "b", "impact": 0.3}, {"feature": "a", "impact": 0.0}]
    rule = RuleSpec(name="perf", series="performance.realized", label="mae", outside_band=True)
    ctx = RuleContext(features=("a", "b"), classes=(), metrics=("mae",), reference_rows=1000,
                      drift_alpha=0.01, error_rate=0.01)
    eng = AlertEngine(store, "m:1", [DerivedRule(rule, "test")], ctx,
                      AlertOptions(impact_of=lambda wid: ranking if wid == 4 else None))
    res = {"window_id": 4, "final": True, "status": "ok", "alerting": True, "realized": {"mae": 2.0},
           "baseline": {"mae": 1.0}, "band": {"mae": [0.9, 1.1]}, "band_status": {"mae": "above"},
           "degraded": ["mae"], "labelled": 100, "predictions": 100}
    (tr,) = eng.on_performance(res)
    assert tr[2].to == "firing"
    (alert,) = eng.view()["firing"]
    assert alert["evidence"]["features_by_impact"] == ranking
    store.dispose()
