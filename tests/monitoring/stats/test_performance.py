"""Per-window performance: realized metrics, bands from the validation baseline, the
insufficient-label rule, and CBPE estimates (and their documented blind spot)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from monitoring.stats.performance import Baseline, Cbpe, PerformanceConfig, classification_metrics, window_performance

CFG = PerformanceConfig()


def calibrated_data(rng, n, flip: float = 0.0):
    """A binary model whose probabilities are calibrated; ``flip`` flips that share of labels."""
    p1 = rng.beta(0.6, 0.6, size=n)
    y = (rng.random(n) < p1).astype(int)
    if flip:
        f = rng.random(n) < flip
        y[f] = 1 - y[f]
    proba = np.column_stack([1 - p1, p1])
    return y, (p1 >= 0.5).astype(int), proba


def window_data(y, pred, proba, labelled=None, t0=1000.0, delay=5.0):
    n = len(y)
    lab = np.ones(n, bool) if labelled is None else labelled
    return {"n": n, "pred_code": pred.astype(float), "pred_value": np.full(n, np.nan),
            "proba": [row.astype(np.float32).tobytes() for row in proba], "predicted_at": np.full(n, t0),
            "true_code": np.where(lab, y, np.nan), "true_value": np.full(n, np.nan),
            "observed_at": np.full(n, t0 + delay), "labelled": lab}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    y, pred, proba = calibrated_data(rng, 3000)
    return Baseline("classification", y, pred, proba, 2, in_sample=False), Cbpe(y, proba)


def test_realized_metrics_are_sklearns(fitted):
    baseline, cbpe = fitted
    rng = np.random.default_rng(1)
    y, pred, proba = calibrated_data(rng, 500)
    res = window_performance("classification", 3, window_data(y, pred, proba), baseline, cbpe, CFG, 2, 2000.0, None)
    r = res["realized"]
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=1e-6)
    assert res["coverage"] == 1.0 and res["label_delay_seconds"]["p50"] == 5.0
    assert res["status"] == "ok" and res["alerting"] and res["final"]
    lo, hi = res["band"]["accuracy"]
    assert lo < baseline.values["accuracy"] < hi and 0 <= lo and hi <= 1


def test_band_narrows_with_more_labels(fitted):
    baseline, _ = fitted
    w50 = np.diff(baseline.band(50)["accuracy"])[0]
    w2000 = np.diff(baseline.band(2000)["accuracy"])[0]
    assert w2000 < w50 / 3  # ~ 1/sqrt(n)


def test_insufficient_labels_never_judged(fitted):
    baseline, cbpe = fitted
    y, pred, proba = calibrated_data(np.random.default_rng(2), 400)
    lab = np.zeros(400, bool)
    lab[:20] = True
    res = window_performance("classification", 0, window_data(y, pred, proba, lab), baseline, cbpe, CFG, 2, 1e9, None)
    assert res["status"] == "insufficient labels" and not res["alerting"] and "degraded" not in res
    assert res["coverage"] == 0.05 and res["estimated"]["accuracy"]["value"] > 0


def with_accuracy(rng, n, accuracy):
    """A window of ``n`` predictions whose labels make exactly ``accuracy`` of them right."""
    y, pred, proba = calibrated_data(rng, n)
    wrong = rng.permutation(n)[:round(n * (1 - accuracy))]
    y = pred.copy()
    y[wrong] = 1 - y[wrong]
    return y, pred, proba


def test_the_band_is_judged_at_the_labelled_rows_not_at_all_predictions(fitted):
    """2,000 predictions of which 100 are labelled (partial coverage, as in production where
    labels trickle in): the band is the one for 100 labels, so an accuracy 6 points under the
    baseline is within it, while the same deficit measured on 2,000 labels is below."""
    baseline, cbpe = fitted
    deficit = round(baseline.values["accuracy"] - 0.06, 2)
    y, pred, proba = calibrated_data(np.random.default_rng(11), 2000)
    lab = np.zeros(2000, bool)
    lab[np.random.default_rng(12).permutation(2000)[:100]] = True
    y[lab] = pred[lab]
    flip = np.flatnonzero(lab)[:round(100 * (1 - deficit))]
    y[flip] = 1 - y[flip]
    partial = window_performance("classification", 0, window_data(y, pred, proba, lab), baseline, cbpe, CFG, 2,
                                 1e9, None)
    assert partial["labelled"] == 100 and partial["realized"]["accuracy"] == pytest.approx(deficit)
    assert partial["band"]["accuracy"] == pytest.approx(list(baseline.band(100)["accuracy"]))
    assert partial["band_status"]["accuracy"] == "within" and "accuracy" not in partial["degraded"]
    full = window_performance("classification", 0, window_data(*with_accuracy(np.random.default_rng(13), 2000, deficit)),
                              baseline, cbpe, CFG, 2, 1e9, None)
    assert full["realized"]["accuracy"] == pytest.approx(deficit)
    assert full["band_status"]["accuracy"] == "below" and "accuracy" in full["degraded"]


def test_too_few_of_a_class_is_insufficient(fitted):
    baseline, cbpe = fitted
    y = np.array([1] * 98 + [0] * 2)
    proba = np.column_stack([np.full(100, 0.2), np.full(100, 0.8)])
    res = window_performance("classification", 0, window_data(y, np.ones(100, int), proba), baseline, cbpe, CFG,
                             2, 1e9, None)
    assert res["status"] == "insufficient labels"


def test_in_sample_baseline_never_alerts():
    rng = np.random.default_rng(3)
    y, pred, proba = calibrated_data(rng, 1000)
    base = Baseline("classification", y, pred, proba, 2, in_sample=True)
    y2, pred2, proba2 = calibrated_data(rng, 300, flip=0.4)
    res = window_performance("classification", 0, window_data(y2, pred2, proba2), base, None, CFG, 2, 1e9, None)
    assert res["status"] == "in-sample baseline" and res["alerting"] is False


def test_not_final_until_coverage_or_max_delay(fitted):
    baseline, cbpe = fitted
    y, pred, proba = calibrated_data(np.random.default_rng(4), 200)
    lab = np.arange(200) < 100
    cfg = PerformanceConfig(coverage_target=0.9, max_label_delay=3600)
    early = window_performance("classification", 0, window_data(y, pred, proba, lab), baseline, cbpe, cfg, 2,
                               now=1000.0 + 60, window_end=1000.0)
    late = window_performance("classification", 0, window_data(y, pred, proba, lab), baseline, cbpe, cfg, 2,
                              now=1000.0 + 3601, window_end=1000.0)
    assert early["final"] is False and late["final"] is True


def test_cbpe_tracks_realized_and_is_blind_to_concept_shift(fitted):
    baseline, cbpe = fitted
    rng = np.random.default_rng(5)
    within, clean_est, flipped_est, flipped_real = 0, [], [], []
    for _ in range(30):
        y, pred, proba = calibrated_data(rng, 500)
        est = cbpe.estimate(pred, proba)["accuracy"]
        real = classification_metrics(list(y), list(pred), proba, [0, 1])["accuracy"]
        within += abs(est[0] - real) <= 2 * est[1]
        clean_est.append(est[0])
    for _ in range(5):
        y, pred, proba = calibrated_data(rng, 500, flip=0.15)  # P(y|x) changed: concept shift
        flipped_est.append(cbpe.estimate(pred, proba)["accuracy"][0])
        flipped_real.append(classification_metrics(list(y), list(pred), proba, [0, 1])["accuracy"])
    assert within / 30 >= 0.9
    assert abs(np.mean(flipped_est) - np.mean(clean_est)) < 0.02          # the estimate stays flat...
    assert np.mean(flipped_real) < np.mean(clean_est) - 0.08              # ...while reality drops


def test_regression_window():
    rng = np.random.default_rng(6)
    yv = rng.normal(size=800)
    pv = yv + rng.normal(scale=0.5, size=800)
    base = Baseline("regression", yv, pv, None, 0, in_sample=False)
    y, p = rng.normal(size=300), None
    p = y + rng.normal(scale=1.5, size=300)  # three times the error
    n = 300
    data = {"n": n, "pred_code": np.full(n, np.nan), "pred_value": p, "proba": [None] * n,
            "predicted_at": np.zeros(n), "true_code": np.full(n, np.nan), "true_value": y, "observed_at": np.ones(n),
            "labelled": np.ones(n, bool)}
    res = window_performance("regression", 0, data, base, None, CFG, 0, 1e9, None)
    assert res["realized"]["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert res["band_status"]["mse"] == "above" and "mse" in res["degraded"] and "r2" in res["degraded"]


def test_config_checks_floors():
    with pytest.raises(ValueError, match="unknown metric"):
        PerformanceConfig(floors={"acc": 0.9})


def test_per_class_metrics_use_class_names(fitted):
    baseline, cbpe = fitted
    y, pred, proba = calibrated_data(np.random.default_rng(9), 300)
    res = window_performance("classification", 0, window_data(y, pred, proba), baseline, cbpe, CFG, 2, 1e9, None,
                             class_names=("ham", "spam"))
    assert set(res["per_class"]) == {"ham", "spam"}
    assert res["per_class"]["spam"]["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert res["per_class"]["ham"]["support"] == int((y == 0).sum())


def test_floors_tighten_the_band():
    rng = np.random.default_rng(12)
    y, pred, proba = calibrated_data(rng, 2000)
    loose = Baseline("classification", y, pred, proba, 2, False).band(100)["accuracy"]
    tight = Baseline("classification", y, pred, proba, 2, False,
                     PerformanceConfig(floors={"accuracy": loose[0] + 0.02})).band(100)["accuracy"]
    assert tight[0] == pytest.approx(loose[0] + 0.02) and tight[1] == loose[1]


def test_isotonic_cbpe_is_cross_fitted_and_calibrated():
    rng = np.random.default_rng(13)
    y, pred, proba = calibrated_data(rng, 4000)
    cb = Cbpe(y, proba)
    assert cb.method == "isotonic"
    q = cb.calibrate(proba)
    bins = np.digitize(q[:, 1], np.linspace(0.1, 0.9, 9))
    for b in range(10):
        sel = bins == b
        if sel.sum() > 200:
            assert abs(y[sel].mean() - q[sel, 1].mean()) < 0.05
