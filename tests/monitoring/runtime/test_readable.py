"""What people read in the views and notifications: ISO times beside epoch seconds, latency
buckets by their bound, the one-line drift summary, the open window's progress with its
close time, the reference-vs-window statistics of a flagged feature, and the alert text."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from monitoring.runtime.evidence import alert_figures, alert_text, attach_statistics
from monitoring.runtime.progress import first_signal, window_progress
from monitoring.runtime.readable import drift_summary, iso, latency_label, readable_latency, with_iso
from monitoring.stats.describe import binned_quantiles, numeric_summary
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
from monitoring.stats.serving import LATENCY_BOUNDS
from monitoring.stats.sketches import NumericSketch
from tests.support import synth

T = 1_796_449_548.25  # 2026-12-05T05:45:48.250Z


def test_every_time_field_gets_an_iso_twin_and_keeps_its_epoch_value():
    view = {"ended_at": T, "at": T, "until": T, "since": None, "rows": 5, "label_delay_seconds": {"max": 3.0},
            "windows": {"started_at": [T, None, T + 60]}, "recent": [{"computed_at": T}],
            "retry_at": 12.0}  # a number too small to be a time
    got = with_iso(view)
    assert got["ended_at"] == T and got["ended_at_iso"] == "2026-12-05T05:45:48.250Z"
    assert got["at_iso"] == got["until_iso"] == got["ended_at_iso"] and "since_iso" not in got
    assert got["windows"]["started_at_iso"] == ["2026-12-05T05:45:48.250Z", None, "2026-12-05T05:46:48.250Z"]
    assert got["recent"][0]["computed_at_iso"] == "2026-12-05T05:45:48.250Z"
    assert "retry_at_iso" not in got and "rows_iso" not in got and got["label_delay_seconds"] == {"max": 3.0}
    assert iso(True) is None and iso(float("nan")) is None


def test_latency_buckets_are_keyed_by_their_bound_in_readable_units():
    i25 = int(np.searchsorted(LATENCY_BOUNDS, 0.025))
    assert latency_label(i25) == f"<= {LATENCY_BOUNDS[i25] * 1000:.3g} ms"
    assert latency_label(0) == "<= 0.1 ms" and latency_label(len(LATENCY_BOUNDS)).startswith("> ")
    assert readable_latency({str(i25): 3, "0": 1}) == {"<= 0.1 ms": 1, latency_label(i25): 3}
    labels = [latency_label(i) for i in range(len(LATENCY_BOUNDS) + 1)]
    assert len(set(labels)) == len(labels)  # no two buckets read the same


def test_the_summary_names_the_drifted_features_of_the_newest_window():
    assert drift_summary(None) == "no window evaluated yet"
    assert drift_summary({"window_id": 12, "drifted": ["alcohol", "region"]}) == \
        "drifted in the last window (12): alcohol, region"
    assert drift_summary({"window_id": 3, "drifted": []}) == "no drift in the last window (3)"
    assert drift_summary({"window_id": 4, "too_small": True, "rows": 2}).endswith("too few to judge drift")
    both = drift_summary({"window_id": 5, "drifted": [], "predictions": {"flagged": True}})
    assert both == "no feature drifted in the last window (5); the prediction distribution moved"


class _Windows:
    def __init__(self, counted, started):
        self.counted, self.started = counted, started

    def counter(self, name):
        return self.counted

    def open_window_started(self, tag, wid):
        return self.started.get(wid)


def test_the_open_window_says_how_far_it_is_and_when_it_closes():
    store = SimpleNamespace(windows=_Windows(1006, {1: T}))
    slow = window_progress(store, "m", 1000, 300.0, now=T + 60)       # 6 rows in a minute: time closes it
    assert (slow["window_id"], slow["rows"], slow["closes_by"]) == (1, 6, "time")
    assert slow["closes_at"] == T + 300 and slow["line"].startswith(
        "window 1: 6/1000 rows, closes at 2026-12-05T05:50:48.250Z (5 min after its first row, unless 1000 rows")
    fast = window_progress(SimpleNamespace(windows=_Windows(1900, {1: T})), "m", 1000, 300.0, now=T + 45)
    assert fast["closes_by"] == "rows" and fast["closes_at"] == pytest.approx(T + 50)  # 20 rows/s
    burst = window_progress(SimpleNamespace(windows=_Windows(1050, {1: T})), "m", 1000, 300.0, now=T + 2)
    assert burst["closes_by"] == "time" and burst["rows_per_second"] is None  # one request is not a rate
    idle = window_progress(SimpleNamespace(windows=_Windows(2000, {})), "m", 1000, 300.0, now=T)
    assert idle["window_id"] == 2 and idle["rows"] == 0 and "opens with the next prediction" in idle["line"]

    first = first_signal(slow, evaluated=0, alert_windows=3, min_rows=30)
    assert first["alert_possible_from_window"] == 3
    assert "needs 3 drifted windows in a row, so it can fire when window 3 closes" in first["line"]
    later = first_signal(slow, evaluated=7, alert_windows=3, min_rows=30)
    assert "alert_possible_from_window" not in later and "needs 3 drifted windows" in later["line"]


def test_binned_quantiles_are_within_one_bin_of_the_exact_ones():
    rng = np.random.default_rng(4)
    x = rng.normal(10, 2, size=5000)
    edges = np.quantile(rng.normal(10, 2, size=2000), np.linspace(0, 1, 41)[1:-1])
    s = NumericSketch(edges)
    s.update(x)
    got = numeric_summary(s)
    assert got["mean"] == pytest.approx(x.mean()) and got["sd"] == pytest.approx(x.std(ddof=1))
    width = np.diff(edges).max()
    for name, q in (("p5", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95)):
        assert abs(got[name] - np.quantile(x, q)) <= width, name
    assert binned_quantiles(np.zeros(3), np.array([0.0, 1.0]), np.inf, -np.inf, [0.5]) == [None]


@pytest.fixture(scope="module")
def drifted():
    rng = np.random.default_rng(0)
    schema, prof = synth.reference(rng, 3000)
    win = synth.window(schema, prof, synth.frame(rng, 1000, shift=1.0, reverse_cat=True))
    report = WindowEvaluator(schema, prof, DriftConfig()).evaluate(win, 7).to_dict()
    report["rows"] = 1000
    attach_statistics(report, prof, win, schema)
    return report


def test_a_flagged_feature_carries_reference_and_window_statistics(drifted):
    by = {f["feature"]: f for f in drifted["features"]}
    x2 = by["x2"]["statistics"]            # shifted by one sd
    assert x2["window"]["mean"] - x2["reference"]["mean"] == pytest.approx(1.0, abs=0.15)
    assert x2["window"]["p50"] - x2["reference"]["p50"] == pytest.approx(1.0, abs=0.2)
    assert set(x2["reference"]) >= {"mean", "sd", "p5", "p25", "p50", "p75", "p95"}
    c2 = by[synth.SHIFTED_CATEGORICAL]["statistics"]   # frequencies reversed: e was 8 %, is 40 %
    assert list(c2["window"]["top"])[0] == "e" and list(c2["window"]["top"]) == list(c2["reference"]["top"])
    assert c2["reference"]["top"]["e"] == pytest.approx(0.08, abs=0.02)
    assert c2["window"]["top"]["e"] == pytest.approx(0.40, abs=0.05)
    assert "statistics" not in by["x0"]    # not flagged: the report stays its size


def test_a_drift_alert_says_what_its_value_is_and_reads_as_one_line(drifted):
    figs = alert_figures("drift.score", "x2", drifted, "per-feature drift score")
    assert figs["value_is"] == "score" and figs["score"] >= 1 and 0 <= figs["p_value"] <= figs["p_holm"] <= 0.01
    assert figs["statistics"]["window"]["mean"] > figs["statistics"]["reference"]["mean"]
    assert "x2" in figs["drifted"]
    assert alert_figures("prediction.drift", None, {"predictions": {"p_value": 0.001, "statistic": 9.0}},
                         "d")["value_is"] == "p_value"
    alert = {"rule": "feature_drift", "model": "wine:3", "instance": "x2", "series": "drift.score",
             "window": {"id": 7, "rows": 1000}, "value": figs["score"], **figs}
    text = alert_text({"status": "firing", "alert": alert}, "https://dash.example.com/")
    assert text.startswith("[FIRING] feature_drift on model wine:3: feature x2 drifted (score ")
    assert "p=" in text and "effect " in text and "mean " in text and "also drifted: " in text
    assert text.endswith("- window 7 (1000 rows) - https://dash.example.com/") and "\n" not in text
    resolved = alert_text({"status": "resolved", "alert": {**alert, "drifted": []}})
    assert resolved.startswith("[RESOLVED] feature_drift on model wine:3: feature x2 back within the reference")
