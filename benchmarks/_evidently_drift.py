#!/usr/bin/env python3
"""Evidently baseline for ``benchmarks/drift_compute.py``, and the data both share.

Run in its own virtual environment (Evidently 0.7.x needs pandas < 3, Vigil's has pandas 3):

    python -m venv .venv-evidently
    .venv-evidently/bin/pip install "evidently>=0.7,<0.8" "pandas<3"
    .venv-evidently/bin/python benchmarks/_evidently_drift.py --n 100000 --cats 5 --seeds 0 --windows 2

It regenerates the benchmark data from the seed with :func:`make_data` (numpy only, so the
parent imports the very same function and both sides see identical arrays), builds the
DataFrames (untimed), then for each (seed, window) times ``Dataset.from_pandas`` for both
frames plus ``Report([DataDriftPreset()], include_tests=True).run(...)`` and reads Evidently's
own per-column verdicts (the ``ValueDrift`` tests that FAIL). Prints one JSON object on stdout.

``--mem`` measures instead the tracemalloc peak (bytes allocated above the inputs while the
first window runs; numpy and pandas buffers are traced) in this fresh process. Each timed
run reports wall seconds and CPU seconds (``time.process_time``, all threads).

This module must import nothing but numpy at the top: the parent (Vigil's venv) imports
:func:`make_data` and :func:`to_frame` from it.
"""

from __future__ import annotations

import numpy as np

N_NUMERIC = 20
N_LEVELS = 5
FREQS = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
N_SHIFTED = 5        # numeric features num_00..num_04 are shifted in the current windows
SHIFT = 0.3          # by this many (reference) standard deviations
REVERSED_CAT = 0     # cat_0's frequencies are reversed in the current windows
LEVELS = np.array([f"c{i}" for i in range(N_LEVELS)], dtype=object)


def numeric_names() -> list[str]:
    return [f"num_{i:02d}" for i in range(N_NUMERIC)]


def categorical_names(n_cat: int) -> list[str]:
    return [f"cat_{j}" for j in range(n_cat)]


def drifted_truth(n_cat: int) -> list[str]:
    """Features that really drift in the current windows."""
    return numeric_names()[:N_SHIFTED] + (categorical_names(n_cat)[REVERSED_CAT:REVERSED_CAT + 1] if n_cat else [])


def make_data(seed: int, n: int, n_cat: int, part: int) -> tuple[np.ndarray, np.ndarray]:
    """(numeric float64 (n, 20), category codes int32 (n, n_cat)).

    ``part`` 0 is the reference; 1, 2, ... are current windows (independent draws, with the
    drift applied). Deterministic in (seed, part).
    """
    rng = np.random.default_rng([seed, part])
    num = rng.standard_normal((n, N_NUMERIC))
    if part > 0:
        num[:, :N_SHIFTED] += SHIFT
    codes = np.empty((n, n_cat), dtype=np.int32)
    for j in range(n_cat):
        p = FREQS[::-1] if (part > 0 and j == REVERSED_CAT) else FREQS
        codes[:, j] = rng.choice(N_LEVELS, size=n, p=p)
    return num, codes


def to_frame(num: np.ndarray, codes: np.ndarray):
    """The same data as a DataFrame: float columns num_00.., string columns cat_0.. ("c0".."c4")."""
    import pandas as pd

    cols = {name: num[:, j] for j, name in enumerate(numeric_names())}
    for j, name in enumerate(categorical_names(codes.shape[1])):
        cols[name] = LEVELS[codes[:, j]]
    return pd.DataFrame(cols)


# -- the Evidently side ---------------------------------------------------------------------

def _run_once(ref_df, cur_df, definition):
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    report = Report([DataDriftPreset()], include_tests=True)
    snap = report.run(current_data=Dataset.from_pandas(cur_df, data_definition=definition),
                      reference_data=Dataset.from_pandas(ref_df, data_definition=definition))
    return snap


def _verdicts(snap) -> tuple[list[str], dict[str, float], dict[str, str]]:
    d = snap.dict()
    scores, methods = {}, {}
    for m in d["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            scores[cfg["column"]] = float(m["value"])
            methods[cfg["column"]] = str(cfg.get("method"))
    drifted = []
    for t in d.get("tests", []):
        params = t.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and t.get("status") == "FAIL":
            drifted.append(params["column"])
    return sorted(drifted), scores, methods


def main(argv=None) -> int:
    import argparse
    import json
    import os
    import resource
    import sys
    import time
    import tracemalloc

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--cats", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--windows", type=int, default=1, help="current windows per seed (parts 1..W)")
    ap.add_argument("--mem", action="store_true", help="tracemalloc peak of the first window instead of timing")
    args = ap.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")

    import warnings

    warnings.filterwarnings("ignore")
    import evidently
    import pandas as pd
    from evidently import DataDefinition

    definition = DataDefinition(numerical_columns=numeric_names(), categorical_columns=categorical_names(args.cats))
    out = {"method": "evidently", "evidently": evidently.__version__, "pandas": pd.__version__,
           "n": args.n, "cats": args.cats, "runs": []}
    first = True
    for seed in args.seeds:
        ref_df = to_frame(*make_data(seed, args.n, args.cats, 0))
        for part in range(1, args.windows + 1):
            cur_df = to_frame(*make_data(seed, args.n, args.cats, part))
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if args.mem and first:
                tracemalloc.start()
                snap = _run_once(ref_df, cur_df, definition)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                out["tracemalloc_peak"] = peak
                elapsed = cpu = None
            else:
                t, c = time.perf_counter(), time.process_time()
                snap = _run_once(ref_df, cur_df, definition)
                elapsed, cpu = time.perf_counter() - t, time.process_time() - c
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            drifted, scores, methods = _verdicts(snap)
            out["runs"].append({"seed": seed, "part": part, "seconds": elapsed, "cpu_seconds": cpu, "drifted": drifted,
                                "scores": scores, "methods": methods,
                                "maxrss_before": rss0 * 1024, "maxrss_after": rss1 * 1024})
            first = False
            del snap, cur_df
            if args.mem:
                break
        if args.mem:
            break
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
