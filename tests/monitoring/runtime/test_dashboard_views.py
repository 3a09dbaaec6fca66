"""The dashboard's views over a store filled directly: columnar windows (oldest first,
bounded by limit and since), one feature's drill-down, JSON-ready throughout."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from monitoring.runtime import views
from monitoring.runtime.history import FIELDS, HEAD, WindowHistory, condense, digest, unpack
from monitoring.store import Store
from tests.support import synth
from tests.support.filled_store import T0, evaluator_for, fill

WINDOWS, ROWS, DRIFT_FROM = 10, 200, 5


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    schema, prof = synth.reference(np.random.default_rng(0), 800)
    evaluator = evaluator_for(schema, prof)
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('views') / 'vigil.db'}")
    tag = "synth:1"

    def window(wid, rng):
        return synth.window(schema, prof, synth.frame(rng, ROWS, shift=1.0 if wid >= DRIFT_FROM else 0.0))

    fill(store, tag, evaluator, window, WINDOWS, seed=1)
    settings = SimpleNamespace(window_rows=ROWS, window_seconds=60.0, drift_alpha=0.01, drift_effect_floor=0.1,
                               window_min_rows=30)
    yield SimpleNamespace(store=store, tag=tag, schema=schema, settings=settings, evaluator=evaluator,
                          model=SimpleNamespace(profile=prof), history=WindowHistory(store, tag, schema.names))
    store.dispose()


def test_windows_are_columns_oldest_first_with_a_features_by_windows_drift_matrix(m):
    v = views.windows(m, 50)
    json.dumps(v, allow_nan=False)
    w = v["windows"]
    assert w["id"] == list(range(WINDOWS)) and w["rows"] == [ROWS] * WINDOWS
    assert len(v["drift"]["score"]) == len(v["features"]) == len(m.schema.names)
    assert all(len(row) == WINDOWS for row in v["drift"]["score"] + v["drift"]["flagged"])
    flagged = {v["features"][i] for i, row in enumerate(v["drift"]["flagged"]) for j, f in enumerate(row)
               if f and j >= DRIFT_FROM}
    assert flagged == set(synth.SHIFTED_NUMERIC)
    assert not any(row[j] for row in v["drift"]["flagged"] for j in range(DRIFT_FROM))
    assert all(w["drifted"][j] == [] for j in range(DRIFT_FROM))
    assert all(r == 50 for r in w["requests"]) and all(p is not None for p in w["latency_p99"])
    assert v["task"] == "regression" and all(x is not None for x in w["prediction_mean"])


def test_limit_and_since_bound_the_windows(m):
    assert views.windows(m, 3)["windows"]["id"] == [7, 8, 9]
    assert views.windows(m, 50, since=T0 + 8 * 60)["windows"]["id"] == [7, 8, 9]   # ended at or after
    assert views.windows(m, 2, since=T0)["windows"]["id"] == [8, 9]                # limit still bounds
    assert views.windows(m, 50, since=T0 + 10_000)["windows"]["id"] == []
    assert [w["window_id"] for w in views.drift(m, 50, since=T0 + 9 * 60)["windows"]] == [9, 8]  # newest first


def test_a_numeric_feature_drills_down_to_its_histograms_on_the_reference_bins(m):
    name = synth.SHIFTED_NUMERIC[0]
    f = views.feature(m, name, limit=6, histograms=3)
    json.dumps(f, allow_nan=False)
    assert f["kind"] == "numeric" and f["windows"]["id"] == [4, 5, 6, 7, 8, 9]
    assert [h["window_id"] for h in f["histograms"]] == [7, 8, 9]
    ref = m.evaluator.reference.numeric[name]
    assert f["reference"]["counts"] == ref.counts.tolist() and len(f["reference"]["edges"]) == len(ref.edges)
    assert all(len(h["counts"]) == len(ref.counts) and sum(h["counts"]) + h["missing"] == ROWS for h in f["histograms"])
    assert f["windows"]["flagged"][1:] == [True] * 5 and all(p < 0.01 for p in f["windows"]["p_holm"][1:])
    assert all(r is not None for r in f["windows"]["out_of_range_rate"])
    # reference vs window statistics: the shifted windows moved by one sd
    rs = f["reference"]["statistics"]
    assert rs["mean"] == pytest.approx(ref.mean) and rs["p5"] < rs["p50"] < rs["p95"]
    for h in f["histograms"]:
        assert h["statistics"]["mean"] - rs["mean"] == pytest.approx(1.0, abs=0.25)
        assert h["statistics"]["p50"] - rs["p50"] == pytest.approx(1.0, abs=0.3)


def test_a_categorical_feature_shows_its_categories_and_the_unseen_bucket(m):
    f = views.feature(m, synth.CATEGORICAL[0], limit=50, histograms=100)
    assert f["kind"] == "categorical" and f["reference"]["categories"] == list("abcde")
    assert len(f["histograms"]) == WINDOWS          # at most MAX_FEATURE_HISTOGRAMS, here every window
    assert all(u is not None for u in f["windows"]["unseen_rate"])
    top = f["reference"]["statistics"]["top"]
    assert list(top)[0] == "a" and top["a"] == pytest.approx(0.4, abs=0.06)   # FREQS[0]
    assert all(list(h["statistics"]["top"])[0] == "a" for h in f["histograms"])


def test_the_history_reads_every_report_once_then_only_the_newest(tmp_path):
    schema, prof = synth.reference(np.random.default_rng(0), 500)
    evaluator = evaluator_for(schema, prof)
    store = Store(f"sqlite:///{tmp_path / 'vigil.db'}")
    reads: list[int] = []
    real = store.windows.digests
    store.windows.digests = lambda tag, limit=50: reads.append(limit) or real(tag, limit=limit)
    clock = [0.0]
    history = WindowHistory(store, "h:1", schema.names, clock=lambda: clock[0])

    def window(wid, rng):
        return synth.window(schema, prof, synth.frame(rng, 50))

    fill(store, "h:1", evaluator, window, 30, seed=2, performance=False)
    assert [r.window_id for r in history.recent(20)] == list(range(10, 30)) and reads == [20]
    assert [r.window_id for r in history.recent(5)] == list(range(25, 30)) and reads == [20, HEAD]
    fill(store, "h:1", evaluator, window, 3, first=30, performance=False)   # new windows: the head only
    assert [r.window_id for r in history.recent(20)][-3:] == [30, 31, 32] and reads[-1] == HEAD
    assert len(history.recent(20)) == 20 and history.full_reads == 1
    fill(store, "h:1", evaluator, window, HEAD + 2, first=33, performance=False)  # more than the head
    assert history.recent(20)[-1].window_id == 33 + HEAD + 1 and history.full_reads == 2
    assert len(history.recent(40)) == 40 and history.full_reads == 3    # a longer history: read afresh
    clock[0] += 1000                                          # and every RESYNC_SECONDS
    history.recent(10)
    assert history.full_reads == 4
    h = history.histograms(33)
    assert set(h) == set(schema.names) and sum(h["x0"]["counts"]) + h["x0"]["missing"] == 50
    store.dispose()


def test_a_window_reads_the_same_from_its_digest_as_from_its_report(tmp_path):
    schema, prof = synth.reference(np.random.default_rng(0), 500)
    evaluator = evaluator_for(schema, prof)
    store = Store(f"sqlite:///{tmp_path / 'vigil.db'}")

    def window(wid, rng):
        return synth.window(schema, prof, synth.frame(rng, 80, shift=1.0 if wid >= 2 else 0.0))

    fill(store, "new:1", evaluator, window, 4, seed=3)
    fill(store, "old:1", evaluator, window, 4, seed=3, digests=False)   # stored before schema v4
    new, old = store.windows.digests("new:1", 10), store.windows.digests("old:1", 10)
    assert all(d.digest and d.report is None for d in new)       # the report is not even read
    assert all(d.digest is None and d.report for d in old)
    from_digest = WindowHistory(store, "new:1", schema.names).recent(10)
    from_report = WindowHistory(store, "old:1", schema.names).recent(10)
    assert [r.window_id for r in from_digest] == [r.window_id for r in from_report] == [0, 1, 2, 3]
    for a, b in zip(from_digest, from_report):
        assert a.features.shape == (len(schema.names), len(FIELDS))
        np.testing.assert_array_equal(a.features, b.features)     # NaN where there is no figure, in both
        assert {k: v for k, v in vars(a).items() if k != "features"} == {k: v for k, v in vars(b).items() if k != "features"}
    assert from_digest[-1].drifted and np.nansum(from_digest[-1].features[:, FIELDS.index("flagged")]) > 0
    store.dispose()


def test_a_digest_made_over_other_feature_names_is_not_trusted(tmp_path):
    schema, prof = synth.reference(np.random.default_rng(0), 500)
    store = Store(f"sqlite:///{tmp_path / 'vigil.db'}")
    fill(store, "m:1", evaluator_for(schema, prof), lambda wid, rng: synth.window(schema, prof, synth.frame(rng, 80)),
         1, performance=False)
    (d,) = store.windows.digests("m:1", 1)
    names = list(schema.names)
    assert unpack(d, names) is not None
    assert unpack(d, names[::-1]) is None and unpack(d, names[:-1]) is None     # reordered, or one fewer
    assert unpack(SimpleNamespace(digest=d.digest[:-8]), names) is None          # cut short
    assert unpack(SimpleNamespace(digest=b"{}"), names) is None                 # not a digest at all
    (record,) = store.windows.recent("m:1", 1)
    assert digest(record, names) == d.digest and condense(record, names).window_id == 0
    store.dispose()


def test_the_views_lead_with_a_summary_and_read_times_and_latency_plainly(m):
    """Item 6 of the first-hour issue: ISO times beside epoch ones, latency buckets by their
    bound, one line naming the drifted features of the newest window."""
    drift = views.drift(m, 3)
    assert drift["summary"].startswith(f"drifted in the last window ({WINDOWS - 1}): " + ", ".join(
        drift["windows"][0]["drifted"])) and set(drift["windows"][0]["drifted"]) >= set(synth.SHIFTED_NUMERIC)
    assert drift["progress"].startswith(f"window 0: 0/{ROWS} rows")  # the filled store counted no served rows
    assert drift["first_signal"].startswith("drift is judged when window 0 closes; windows with fewer than 30 rows")
    w = drift["windows"][0]
    assert w["ended_at_iso"].endswith("Z") and w["evaluated_at_iso"].endswith("Z") and isinstance(w["ended_at"], float)
    keys = list(w["serving"]["latency"])
    assert keys and all(k.startswith(("<= ", "> ")) and k.endswith((" ms", " s", " min", " h")) for k in keys)
    assert sum(w["serving"]["latency"].values()) == w["serving"]["requests"]
    flagged = [f for f in w["features"] if f["flagged"]]
    assert flagged and all("statistic" in f and "p_value" in f and "score" in f for f in flagged)
    cols = views.windows(m, 5)
    assert cols["summary"] == drift["summary"] and len(cols["windows"]["ended_at_iso"]) == 5
    assert views.drift(m, 3, since=T0 + 10_000)["summary"] == drift["summary"]  # the newest, whatever since drops
