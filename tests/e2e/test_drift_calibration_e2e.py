"""End-to-end: drift verdicts at scale through a served model. A 50,000-row reference and
20,000-row windows: near-null traffic (every numeric mean +0.02 sd, category shares moved
by 1 point) flags nothing and alerts nothing for three windows; a 0.3 sd shift on two
features then flags exactly those two."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.e2e.test_drift_e2e import wait_windows
from tests.support.server import serve

pytestmark = pytest.mark.e2e
NUMERIC = [f"x{i}" for i in range(5)]
SHARES = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
WINDOW = 20_000
BATCH = 10_000  # rows per /predict request: a window fills in two requests


def frame(rng, n: int, shift: dict[str, float] | None = None, points: float = 0.0) -> pd.DataFrame:
    df = pd.DataFrame(rng.normal(size=(n, len(NUMERIC))), columns=NUMERIC)
    for name, delta in (shift or {}).items():
        df[name] += delta
    p = SHARES.copy()
    p[0] -= points / 100
    p[1] += points / 100
    df["c"] = rng.choice(list("abcde"), size=n, p=p)
    return df


@pytest.fixture(scope="module")
def large_reference_tag(bentoml_home, tmp_path_factory):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from models.registry import register

    rng = np.random.default_rng(50_000)
    ref = frame(rng, 50_000)
    ref["target"] = (ref["x0"] + rng.normal(size=len(ref)) > 0.5).astype(int)
    model = make_pipeline(ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["c"])],
                                            remainder="passthrough"), LogisticRegression())
    model.fit(ref.drop(columns=["target"]), ref["target"])
    d = tmp_path_factory.mktemp("large_reference")
    ref.iloc[:48_000].to_parquet(d / "reference.parquet")
    ref.iloc[48_000:].to_parquet(d / "validation.parquet")
    return register(None, d / "reference.parquet", "target", validation=d / "validation.parquet",
                    name="large-reference", task="classification", model=model, seed=0).tag


def post_window(client, df: pd.DataFrame) -> None:
    for start in range(0, len(df), BATCH):
        rows = df.iloc[start:start + BATCH].to_dict("records")
        r = client.post("/predict", json={"instances": rows})
        assert r.status_code == 200, r.text[:300]


def test_near_null_traffic_flags_nothing_at_20k_row_windows_and_a_real_shift_flags_exactly_its_features(
        tmp_path, large_reference_tag):
    rng = np.random.default_rng(20_000)
    env = {"VIGIL_MODEL": large_reference_tag, "VIGIL_WINDOW_ROWS": str(WINDOW), "VIGIL_WINDOW_SECONDS": "3600",
           "VIGIL_MAX_BATCH_ROWS": str(BATCH)}
    near_null = {name: 0.02 for name in NUMERIC}
    with serve(tmp_path, env) as server, server.client(timeout=60) as c:
        for w in range(3):
            post_window(c, frame(rng, WINDOW, near_null, points=1.0 if w % 2 else -1.0))
        quiet = wait_windows(c, 3)
        alerts = c.get("/monitoring/alerts").json()
        post_window(c, frame(rng, WINDOW, {"x1": 0.3, "x3": 0.3}))
        windows = wait_windows(c, 4)
    assert len(quiet) == 3 and all(w["rows"] == WINDOW for w in quiet)
    for w in quiet:
        assert w["drifted"] == [], (w["window_id"], w["drifted"])
        assert not w["predictions"]["flagged"], w["predictions"]
        assert not (w["multivariate"] or {}).get("flagged"), w["multivariate"]
    assert alerts["firing"] == []
    shifted = {w["window_id"]: w for w in windows}[3]
    assert sorted(shifted["drifted"]) == ["x1", "x3"]
    assert not shifted["predictions"]["flagged"]  # the model reads x0 and c only
    assert not (shifted["multivariate"] or {}).get("flagged"), shifted["multivariate"]
    effects = {f["feature"]: f["effect"] for f in shifted["features"]}
    assert effects["x1"] == pytest.approx(0.3, abs=0.05) and effects["x3"] == pytest.approx(0.3, abs=0.05)
