"""Direct loss estimation for regressors: its estimate follows covariate shift within its
standard error, it is blind to concept shift (the documented caveat, measured here), and
it degrades to the prediction-only loss models when features were not logged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitoring.stats.dle import MIN_LOGGED_ROWS, Dle, parse_logged, window_fields

WINDOWS, ROWS = 20, 500


def make(rng, n, shift=0.0, concept=0.0):
    """y depends on x1 (noise grows with |x1|), x2 and a category; ``shift`` moves x1
    (P(y | x) unchanged), ``concept`` changes how y depends on x2 (P(y | x) changed)."""
    x1 = rng.normal(shift, 1.0, n)
    x2 = rng.normal(0.0, 1.0, n)
    c = rng.integers(0, 3, n)
    y = 2 * x1 + np.sin(2 * x2) + 0.5 * c + (0.3 + 0.6 * np.abs(x1)) * rng.normal(size=n) + concept * x2
    return {"x1": x1, "x2": x2, "c": np.array([f"k{v}" for v in c], dtype=object)}, y


def logged(X, n):
    return [{k: (X[k][i] if k == "c" else float(X[k][i])) for k in X} for i in range(n)]


def predict(X):
    """The monitored model: right about x1 and the category, linear where y is not (x2)."""
    return 2 * X["x1"] + 0.5 * np.array([int(v[1]) for v in X["c"]]) + 0.4 * X["x2"]


@pytest.fixture(scope="module")
def fitted():
    Xv, yv = make(np.random.default_rng(0), 3000)
    return predict, Dle(Xv, yv, predict(Xv), categorical=["c"], seed=0)


def covered(fitted, seed, **shift) -> list[bool]:
    """Per window: is the realized MAE within 2 standard errors of the estimate?"""
    predict, dle = fitted
    rng = np.random.default_rng(seed)
    out = []
    for i in range(WINDOWS):
        X, y = make(rng, ROWS, **{k: v(i) for k, v in shift.items()})
        p = predict(X)
        value, se = dle.estimate(p, (p, logged(X, ROWS))).values["mae"]
        out.append(abs(value - np.abs(y - p).mean()) <= 2 * se)
    return out


def test_under_covariate_shift_the_estimated_mae_is_within_two_standard_errors_in_90_percent_of_windows(fitted):
    # x1's mean moves 0 -> 1.33 sd (inside the validation data's support): the realized MAE
    # grows by a third, noise growing with |x1|. Over window seeds 1-10 the share is 0.85-1.00,
    # mean 0.95 (nominal 0.954); beyond ~1.5 sd the loss models extrapolate flat and it falls
    # (docs/dle.md). Seed 0's validation sample happens to err 2 of its SEs above the
    # population: the standard error carries the validation sample's own noise for that.
    hits = covered(fitted, 1, shift=lambda i: 0.07 * i)
    assert sum(hits) / WINDOWS >= 0.9, hits


def test_under_concept_shift_the_estimate_stays_flat_while_the_error_grows_the_documented_blind_spot(fitted):
    # the same inputs now mean other targets: the loss models cannot know, so the estimate
    # misses the realized MAE in (nearly) every window. This is the caveat docs/dle.md states.
    hits = covered(fitted, 2, concept=lambda i: 1.0)
    assert sum(hits) / WINDOWS <= 0.1, hits


def test_the_estimate_rises_with_the_error_under_covariate_shift(fitted):
    predict, dle = fitted
    rng = np.random.default_rng(3)
    est = []
    for shift in (0.0, 1.5):
        X, _ = make(rng, ROWS, shift=shift)
        p = predict(X)
        est.append(dle.estimate(p, (p, logged(X, ROWS))).values["mae"][0])
    assert est[1] > 1.3 * est[0]


def test_a_sample_of_logged_rows_serves_with_a_wider_standard_error(fitted):
    predict, dle = fitted
    X, _ = make(np.random.default_rng(4), ROWS)
    p = predict(X)
    full = dle.estimate(p, (p, logged(X, ROWS)))
    sample = dle.estimate(p, (p[:100], logged(X, 100)))
    assert full.inputs == sample.inputs == "features" and sample.rows == 100 and full.rows == ROWS
    assert sample.values["mae"][1] > full.values["mae"][1]
    rmse, se = sample.values["rmse"]
    assert rmse == pytest.approx(np.sqrt(sample.values["mse"][0])) and se > 0


def test_without_enough_logged_features_the_prediction_only_models_serve(fitted):
    predict, dle = fitted
    X, y = make(np.random.default_rng(5), ROWS)
    p = predict(X)
    for logged_rows in (None, (p[:5], logged(X, 5))):
        est = dle.estimate(p, logged_rows)
        assert est.inputs == "prediction" and est.rows == ROWS
        assert est.values["mae"][0] == pytest.approx(np.abs(y - p).mean(), rel=0.25)
    assert MIN_LOGGED_ROWS > 5


def test_window_fields_read_the_prediction_log_and_skip_what_they_cannot_parse(fitted):
    predict, dle = fitted
    X, _ = make(np.random.default_rng(6), 100)
    p = predict(X)
    texts = [json.dumps(r) for r in logged(X, 100)]
    texts[0], texts[1] = None, "{not json"
    texts[2] = json.dumps({"x1": "9f86d081884c7d65", "x2": None, "c": "unseen"})  # hashed / missing / unseen
    data = {"n": 100, "pred_value": p, "logged": (list(p), texts)}
    out = window_fields(dle, data)
    assert out["estimated_by"] == {"method": "dle", "inputs": "features", "rows": 98}
    assert set(out["estimated"]) == {"mae", "mse", "rmse"}
    assert all(v["se"] > 0 and v["value"] > 0 for v in out["estimated"].values())
    preds, rows = parse_logged(list(p[:3]), texts[:3])
    assert len(rows) == 1 and preds[0] == p[2]


def test_fitting_is_seeded_and_refuses_too_few_rows():
    rng = np.random.default_rng(7)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    a = Dle({"x": x}, y, x, seed=1).estimate(x[:50]).values
    b = Dle({"x": x}, y, x, seed=1).estimate(x[:50]).values
    assert a == b
    with pytest.raises(ValueError, match="at least 30"):
        Dle({"x": x[:20]}, y[:20], x[:20])
    with pytest.raises(ValueError, match="folds"):
        Dle({"x": x}, y, x, folds=1)


def test_a_perfect_model_is_estimated_to_make_no_error():
    x = np.linspace(0, 1, 200)
    est = Dle({"x": x}, x, x).estimate(x[:50])
    assert est.values["mae"] == (0.0, 0.0) and est.values["rmse"] == (0.0, 0.0)
