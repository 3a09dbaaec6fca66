"""End-to-end data quality: a served model whose feature ``income`` is missing in 10 % of
the reference. Traffic at 10 % missing (with its sampling noise) raises nothing; when the
share rises to 22 % the default ``missing_share_rise`` rule fires, naming ``income``."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from tests.support.server import serve

pytestmark = pytest.mark.e2e
WINDOW = 1000


def _frame(rng: np.random.Generator, n: int, missing: float) -> pd.DataFrame:
    age = rng.normal(40, 10, n)
    income = rng.normal(50, 15, n)
    income[rng.random(n) < missing] = np.nan
    y = (rng.random(n) < 1 / (1 + np.exp(-(age - 40) / 10))).astype(int)
    return pd.DataFrame({"age": age, "income": income, "label": y})


@pytest.fixture(scope="module")
def nullable_tag(bentoml_home, tmp_path_factory) -> str:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from models.registry import register

    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("nullable")
    train, valid = _frame(rng, 5000, 0.10), _frame(rng, 1000, 0.10)
    train.to_csv(d / "train.csv", index=False)
    valid.to_csv(d / "valid.csv", index=False)
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(train[["age", "income"]], train["label"])
    return register(None, d / "train.csv", "label", validation=d / "valid.csv", name="nullable", model=model).tag


def _wait(fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _send(c, rng: np.random.Generator, windows: int, missing: float) -> None:
    for _ in range(windows * WINDOW // 500):
        rows = _frame(rng, 500, missing)[["age", "income"]].astype(object)
        rows = rows.where(rows.notna(), None).to_dict("records")
        res = c.post("/predict", json={"instances": rows})
        assert res.status_code == 200, res.text


def test_a_missing_share_rising_from_10_to_22_percent_fires_naming_the_feature(tmp_path, nullable_tag):
    rng = np.random.default_rng(11)
    env = {"VIGIL_MODEL": nullable_tag, "VIGIL_WINDOW_ROWS": str(WINDOW), "VIGIL_WINDOW_SECONDS": "3600"}
    with serve(tmp_path, env) as server, server.client(timeout=30) as c:
        rules = {r["name"]: r for r in c.get("/monitoring/alerts").json()["rules"]}
        assert rules["missing_share_rise"]["series"] == "quality.missing_rate"
        assert "Beta-binomial" in rules["missing_share_rise"]["derivation"]

        _send(c, rng, 3, 0.10)                                        # windows 0..2: the reference's share
        closed = _wait(lambda: len(c.get("/monitoring/drift").json()["windows"]) >= 3)
        assert closed
        shares = [q["missing_rate"] for w in c.get("/monitoring/drift").json()["windows"]
                  for q in w["quality"] if q["feature"] == "income"]
        assert len(shares) == 3 and len(set(shares)) > 1                  # sampling noise, not a constant
        assert c.get("/monitoring/alerts").json()["alerts"] == []

        _send(c, rng, 1, 0.22)                                        # window 3: a broken upstream
        firing = _wait(lambda: c.get("/monitoring/alerts").json()["firing"])
        windows = c.get("/monitoring/drift").json()["windows"]
    assert [(a["rule"], a["instance"]) for a in firing] == [("missing_share_rise", "income")], firing
    quality = {q["feature"]: q for q in windows[0]["quality"]}
    assert windows[0]["window_id"] == 3 and quality["income"]["missing_rate"] > 0.18
