"""The prediction log with feature sampling below 1 (VIGIL_LOG_SAMPLE_RATE): every served
row is logged (the feedback join and the performance windows need each one), and only the
sampled share carries its feature values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as ss

from monitoring.runtime.predlog import PredictionLogger
from tests.monitoring.runtime.test_monitor import items
from tests.support import synth

ROWS = 4000


@pytest.fixture(scope="module")
def served():
    rng = np.random.default_rng(3)
    schema, _ = synth.reference(rng, 300, multivariate=False)
    df = synth.frame(rng, ROWS)
    return schema, df, items(schema, df, per_item=100)


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_every_row_is_logged_and_the_sampled_share_carries_its_features(served, rate):
    schema, df, its = served
    rows = PredictionLogger("m", schema, sample_rate=rate, seed=1).rows(its, start=0, window_rows=1000)
    assert [r["seq"] for r in rows] == list(range(ROWS))
    assert [r["window_id"] for r in rows] == [i // 1000 for i in range(ROWS)]
    assert [(r["request_id"], r["row_index"]) for r in rows] == [(it.request_id, i) for it in its
                                                                 for i in range(it.n_rows)]
    kept = [i for i, r in enumerate(rows) if r["features"] is not None]
    low, high = ss.binom.ppf([0.001, 0.999], ROWS, rate)
    assert low <= len(kept) <= high, f"{len(kept)} of {ROWS} rows kept their features at rate {rate}"
    for i in kept[:50]:  # what is kept is the row's own values
        got = json.loads(rows[i]["features"])
        assert [got[f"x{j}"] for j in range(20)] == pytest.approx(df[[f"x{j}" for j in range(20)]].iloc[i].tolist())
