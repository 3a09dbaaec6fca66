"""Registration's insight: permutation importance ranks drifted features by what the model
leans on (drift impact), and both it and the DLE loss models are stored with the model and
read back at serving time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.adapters import ModelAdapter
from models.frames import frame_to_columns
from models.insight import (
    DLE_FILE,
    IMPORTANCE_FILE,
    measure,
    permutation,
    read_dle,
    read_importance,
)
from models.registry import load, register
from monitoring.schema import ModelSchema, infer_feature_specs
from monitoring.stats import impact
from monitoring.stats.dle import Dle
from monitoring.stats.evaluate import WindowEvaluator
from monitoring.stats.profile import Profile, edges_from_sample


def frame(rng, n, shift=0.0):
    df = pd.DataFrame({"a": rng.normal(size=n) + shift, "b": rng.normal(size=n) + shift,
                       "c": rng.normal(size=n)})
    df["y"] = 3 * (df["b"] - shift) + 0.5 * df["c"] + rng.normal(0, 0.3, n)
    return df


def leans_on_b(X):
    """The model: ignores ``a`` entirely, leans on ``b`` (and a little on ``c``)."""
    X = np.asarray(X, dtype=float)
    return 3 * X[:, 1] + 0.5 * X[:, 2]


def test_the_feature_the_model_leans_on_ranks_first_by_impact_while_raw_drift_scores_tie():
    rng = np.random.default_rng(0)
    ref = frame(rng, 5000)
    schema = ModelSchema(tuple(infer_feature_specs(ref[["a", "b", "c"]])), task="regression", target="y")
    importance = permutation(ModelAdapter(leans_on_b, schema), frame(rng, 3000), seed=0)
    weights = impact.weights({k: v["mean"] for k, v in importance["features"].items()})
    assert weights["a"] == 0.0 and weights["b"] > 0.8 and 0 < weights["c"] < 0.2

    num, codes = frame_to_columns(ref, schema)
    prof = Profile.empty(schema, edges_from_sample(schema, num), np.array([0.0]))
    prof.update(num, codes, values=np.zeros(len(ref)))
    shifted = frame(rng, 1000, shift=0.5)  # a and b shifted by the same amount
    win = prof.empty_like()
    wn, wc = frame_to_columns(shifted, schema)
    win.update(wn, wc, values=np.zeros(len(shifted)))
    report = impact.annotate(WindowEvaluator(schema, prof).evaluate(win, 7).to_dict(), weights)

    by_name = {f["feature"]: f for f in report["features"]}
    assert by_name["a"]["flagged"] and by_name["b"]["flagged"] and not by_name["c"]["flagged"]
    # the raw drift score sees the same shift on both ...
    assert by_name["a"]["score"] == pytest.approx(by_name["b"]["score"], rel=0.25)
    # ... impact sees that only one matters to the model
    assert report["impact_ranking"][0]["feature"] == "b"
    assert by_name["a"]["impact"] == 0.0 < by_name["b"]["impact"]


def test_annotate_leaves_a_window_too_small_to_judge_alone_and_weights_ignore_noise():
    small = {"window_id": 1, "too_small": True, "features": []}
    assert impact.annotate(dict(small), {"a": 1.0}) == small
    assert impact.weights({"a": -0.1, "b": float("nan")}) == {"a": 0.0, "b": 0.0}
    assert impact.ranking(None) is None and impact.ranking({"features": []}) is None


@pytest.fixture(scope="module")
def regressor_tag(bentoml_home, tmp_path_factory):
    from sklearn.linear_model import LinearRegression

    d = tmp_path_factory.mktemp("insight")
    rng = np.random.default_rng(1)
    train, valid = frame(rng, 600), frame(rng, 400)
    train.to_csv(d / "train.csv", index=False)
    valid.to_csv(d / "valid.csv", index=False)
    model = LinearRegression().fit(train[["a", "b", "c"]], train["y"])
    return register(None, d / "train.csv", "y", validation=d / "valid.csv", model=model, name="insight-reg",
                    task="regression").tag


def test_registration_stores_importance_and_loss_models_read_back_for_serving(regressor_tag):
    m = load(regressor_tag)
    assert (m.path / IMPORTANCE_FILE).is_file() and (m.path / DLE_FILE).is_file()
    imp = read_importance(m.path)
    assert set(imp) == {"a", "b", "c"} and imp["b"] > imp["c"] > abs(imp["a"])
    dle = read_dle(m.path)
    assert isinstance(dle, Dle) and dle.rows == 400
    est = dle.estimate(np.zeros(50)).values
    assert set(est) == {"mae", "mse", "rmse"}


def test_an_unreadable_stored_file_serves_the_model_without_it(tmp_path, caplog):
    (tmp_path / IMPORTANCE_FILE).write_text("{broken")
    (tmp_path / DLE_FILE).write_bytes(b"not a pickle")
    assert read_importance(tmp_path) is None and read_dle(tmp_path) is None
    assert "serving without it" in caplog.text
    assert read_importance(tmp_path / "absent") is None


def test_a_model_registered_without_validation_gets_importance_but_never_loss_models(test_tags, regressor_tag):
    m = load(test_tags["in_sample"])  # a classifier registered without validation data
    assert read_importance(m.path) is not None and read_dle(m.path) is None
    reg = load(regressor_tag)  # in-sample residuals would promise errors the model never makes
    rows = pd.read_parquet(reg.path / "validation.parquet")
    got = measure(reg.adapter, rows, in_sample=True)
    assert got.dle is None and got.importance["in_sample"] is True
    assert measure(reg.adapter, rows, in_sample=False).dle is not None
