"""End-to-end: clean then shifted traffic over HTTP; drift shows in /monitoring/drift and /metrics."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.e2e.test_serve import metric
from tests.support.server import serve

pytestmark = pytest.mark.e2e
SHIFTED = ("mean_texture", "worst_smoothness", "mean_symmetry")


def wait_windows(client, n: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        windows = client.get("/monitoring/drift").json()["windows"]
        if len(windows) >= n or time.monotonic() > deadline:
            return windows
        time.sleep(0.3)


def test_shifted_features_flagged_exactly_in_the_shifted_window(tmp_path, demo_tags, demo_rows, demo_tags_reference_sd):
    rng = np.random.default_rng(7)
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "200", "VIGIL_WINDOW_SECONDS": "3600"}

    def batch(shift: bool) -> list[dict]:
        rows = [dict(demo_rows[i]) for i in rng.integers(0, len(demo_rows), size=20)]
        if shift:
            for r in rows:
                for f in SHIFTED:
                    r[f] += 1.0 * demo_tags_reference_sd[f]
        return rows

    with serve(tmp_path, env) as server, server.client() as c:
        for shift in [False] * 20 + [True] * 10:  # windows 0 and 1 clean, window 2 shifted
            assert c.post("/predict", json={"instances": batch(shift)}).status_code == 200
        windows = wait_windows(c, 3)
        metrics = c.get("/metrics").text
    assert [w["window_id"] for w in windows] == [2, 1, 0]  # newest first
    by_id = {w["window_id"]: w for w in windows}
    for wid in (0, 1):
        assert by_id[wid]["rows"] == 200 and not by_id[wid]["too_small"]
        assert by_id[wid]["drifted"] == [], by_id[wid]["drifted"]
    shifted = by_id[2]
    assert shifted["complete"] and shifted["rows"] == 200
    assert sorted(shifted["drifted"]) == sorted(SHIFTED)
    assert shifted["reference_rows"] == 341
    flagged = {f["feature"]: f for f in shifted["features"]}
    assert all(flagged[f]["score"] >= 1 and flagged[f]["p_holm"] <= 0.01 for f in SHIFTED)
    # the last closed window is the shifted one: its gauges are in /metrics
    for f in SHIFTED:
        assert metric(metrics, "vigil_drift_flagged", feature=f) == 1
        assert metric(metrics, "vigil_drift_score", feature=f) >= 1
    assert metric(metrics, "vigil_drift_flagged", feature="mean_radius") == 0
    assert metric(metrics, "vigil_drift_share") == pytest.approx(3 / 30)
    assert metric(metrics, "vigil_windows_closed_total") == 3
    assert metric(metrics, "vigil_window_rows") == 200
