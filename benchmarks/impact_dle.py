"""What drift impact and DLE cost: at registration, and per window.

Registers a regressor (25 numeric features, a HistGradientBoosting model) with a reference
and a validation file, in a temporary BentoML home, and reports:

1. registration: the whole ``register()`` call, and within it permutation importance and
   the DLE fit (``Insight.seconds``), as a share of the rest;
2. per window (in-process, no store): the drift evaluation of one window with and without
   the impact annotation, and the performance scoring of one window (realized metrics +
   band) with and without the DLE estimate, from all rows' features, a 10 % sample of them
   (the default ``log_sample_rate``) and the predictions alone.

    .venv/bin/python benchmarks/impact_dle.py [--validation 5000] [--window 1000] [--repeat 5]

Prints figures; asserts nothing. Medians of ``--repeat`` runs; ratios are against the
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = 25


def frame(rng, n: int, shift: float = 0.0):
    import numpy as np
    import pandas as pd

    X = rng.normal(size=(n, FEATURES))
    X[:, :5] += shift
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(FEATURES)])
    df["y"] = X[:, 0] * 2 + np.sin(X[:, 1]) + 0.5 * X[:, 2] * X[:, 3] + (0.3 + np.abs(X[:, 0]) * 0.3) * rng.normal(
        size=n)
    return df


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=int, default=20_000)
    ap.add_argument("--validation", type=int, default=5_000)
    ap.add_argument("--window", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    home = tempfile.mkdtemp(prefix="vigil-bench-")
    os.environ["BENTOML_HOME"] = home

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor

    from models.frames import frame_to_columns
    from models.insight import measure, read_dle, read_importance
    from models.registry import load, register
    from monitoring.stats import impact
    from monitoring.stats.dle import window_fields
    from monitoring.stats.evaluate import WindowEvaluator
    from monitoring.stats.performance import Baseline, PerformanceConfig, window_performance

    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(FEATURES)]
    train, ref, val = frame(rng, a.reference), frame(rng, a.reference), frame(rng, a.validation)
    model = HistGradientBoostingRegressor(max_iter=100, random_state=0).fit(train[names].to_numpy(), train["y"])
    d = Path(home)
    ref.to_parquet(d / "ref.parquet")
    val.to_parquet(d / "val.parquet")

    t = time.perf_counter()
    reg = register(None, d / "ref.parquet", "y", validation=d / "val.parquet", model=model, name="bench",
                   task="regression")
    total = time.perf_counter() - t
    m = load(reg.tag)
    import pandas as pd

    rows = pd.read_parquet(m.path / "validation.parquet")
    insight = measure(m.adapter, rows, in_sample=False)  # timed again, alone, on the same rows
    imp, dle = insight.seconds["importance"], insight.seconds["dle"]
    rest = total - imp - dle
    stored = json.loads((m.path / "importance.json").read_text())
    print(f"registration ({a.reference:,} reference rows, {a.validation:,} validation rows, {FEATURES} features): "
          f"{total:.2f} s in all")
    print(f"  permutation importance: {imp:.2f} s ({stored['rows']} rows x {stored['repeats']} repeats x "
          f"{FEATURES} features) = {imp / rest:.2f}x the rest of registration")
    print(f"  DLE fit: {dle:.2f} s (6 boosting fits on {insight.dle.rows:,} rows) = {dle / rest:.2f}x the rest")
    print(f"  rest of registration (scan, probes, profile, baseline, save): {rest:.2f} s")

    # -- per window -----------------------------------------------------------------------
    weights = impact.weights(read_importance(m.path))
    dle_model = read_dle(m.path)
    evaluator = WindowEvaluator(m.schema, m.profile)
    win_df = frame(np.random.default_rng(1), a.window, shift=0.5)
    num, codes = frame_to_columns(win_df, m.schema)
    pred = m.adapter.model.predict(num)
    window = m.profile.empty_like()
    window.update(num, codes, values=pred)
    evaluator.evaluate(window, 1)  # fill the bootstrap nulls once, as serving does at start-up
    base_eval = median_time(lambda: evaluator.evaluate(window, 1).to_dict(), a.repeat)
    with_impact = median_time(lambda: impact.annotate(evaluator.evaluate(window, 1).to_dict(), weights), a.repeat)
    print(f"drift evaluation of a {a.window:,}-row window: {base_eval * 1000:.1f} ms; with impact "
          f"{with_impact * 1000:.1f} ms ({with_impact / base_eval:.3f}x)")

    y_true, y_pred, _ = (val["y"].to_numpy(), rows["__prediction__"].to_numpy(dtype=float), None)
    baseline = Baseline("regression", y_true, y_pred, None, 0, False, PerformanceConfig())
    n = a.window
    data = {"n": n, "pred_code": np.full(n, np.nan), "pred_value": pred, "proba": [None] * n,
            "predicted_at": np.full(n, 1000.0), "true_code": np.full(n, np.nan),
            "true_value": win_df["y"].to_numpy(), "observed_at": np.full(n, 1005.0), "labelled": np.ones(n, bool)}
    baseline.band(n)  # cached per size in serving too

    def score(extra=None):
        d = window_performance("regression", 1, data, baseline, None, PerformanceConfig(), 0, 2000.0, None)
        if extra is not None:
            d.update(window_fields(dle_model, {**data, **extra}))
        return d

    texts = [json.dumps({k: float(v) for k, v in zip(names, r)}) for r in num]
    sample = np.random.default_rng(2).random(n) < 0.1
    base_score = median_time(score, a.repeat)
    cases = {"all rows' features": {"logged": (list(pred), texts)},
             "10 % of rows' features": {"logged": ([p for p, s in zip(pred, sample) if s],
                                                   [t for t, s in zip(texts, sample) if s])},
             "predictions only": {}}
    print(f"performance scoring of a {n:,}-row window (realized + band): {base_score * 1000:.1f} ms")
    for label, extra in cases.items():
        t = median_time(lambda extra=extra: score(extra), a.repeat)
        est = score(extra)
        mae = est["estimated"]["mae"]
        print(f"  with DLE from {label}: {t * 1000:.1f} ms ({t / base_score:.2f}x); estimated MAE "
              f"{mae['value']:.3f} ± {mae['se']:.3f}, realized {est['realized']['mae']:.3f}")


if __name__ == "__main__":
    main()
