#!/usr/bin/env python3
"""Cost of Vigil's per-feature drift check against scipy and Evidently, and of feeding a
monitoring window from the queue.

Data (``benchmarks/_evidently_drift.py``'s :func:`make_data`, shared with the Evidently
side so every method sees identical arrays): a reference and current windows of

- 100,000 rows x 20 numeric (standard normal) + 5 categorical features (5 levels,
  frequencies .40/.25/.15/.12/.08), and
- 1,000,000 rows x 20 numeric features;

in every current window num_00..num_04 are shifted by 0.3 sd and (100k case) cat_0's
frequencies are reversed. Window 1 and window 2 are independent draws.

Methods, each timed in a fresh subprocess (``--worker``) on the same data:

- **vigil**: the reference profile is built first (reported, untimed in the comparison:
  in production it is built once at registration and stored). Timed: ingesting the
  current rows into a window, ``Profile.update`` on the prepared float64 matrix / int32
  codes (the validator builds them on the request path, so that conversion is not the
  monitor's cost), plus ``WindowEvaluator.evaluate`` (detector=None: per-feature checks
  only; the PCA detector's cost is reported apart). *cold* = the first window in the
  process (fills the bootstrap null cache); *prepared* = the first window in another fresh
  process after ``WindowEvaluator.prepare(rows)`` ran untimed (as the service does on a
  background thread at start, for ``window_rows``); *warm* = the least of the next windows
  of the same size.
- **scipy**: per column ``ks_2samp`` (numeric) on the raw reference and current values,
  ``chi2_contingency`` on the 2 x k count table (categorical; the counting is timed),
  Holm's correction at the same alpha. Cold/warm as above.
- **evidently**: ``Report([DataDriftPreset()])`` in ``.venv-evidently`` (Evidently 0.7.x,
  pandas < 3), run as ``benchmarks/_evidently_drift.py``; timed: ``Dataset.from_pandas``
  of both frames + ``report.run``. Verdicts are Evidently's own ValueDrift tests.

Peak memory: **tracemalloc** peak of the measured call (bytes allocated above its inputs;
numpy and pandas buffers are traced), each method in its own fresh subprocess (a separate
run from the timing one, since tracing slows Python-heavy code). The timing subprocess also
reports the growth of ``ru_maxrss`` across the measured calls (0 when the inputs' own
high-water mark was never exceeded).

Verdicts are compared at 100k over ``--seeds`` seeds (vigil vs scipy) and ``--evidently-seeds``
(vs Evidently): agreements per feature, and each mismatch with its p-values and effect.
Vigil flags a feature when its Holm-adjusted p <= alpha AND its effect (normalised
Wasserstein / Jensen-Shannon distance) >= 0.1; scipy here is Holm only.

Finally the per-row cost of feeding a window from the monitor queue (25 features, batches of
100 rows): (a) ``Profile.update`` per batch, (b) ``WindowManager.consume`` end to end
(MonitorItem + ValidatedBatch, SQLite store in a temp dir, window_rows=1000,
flush_interval=0.5), delivered one item per call and in drains of 256 items; also with the
PCA detector, with the PCA detector and the service's prediction log (sample rate 0.1, as
the service runs it), and at window_rows=10000.

Times are CPU seconds (``process_time``) beside wall seconds: on a shared machine CPU time
is the steadier figure, and speedups use it (the summary also gives wall-time ratios).
``--only timing,verdicts,ingest`` runs a subset.

Targets (reported, never asserted; exit status 0): vigil >= 5x faster than scipy (so >= 80x
Evidently) with the same verdicts; <= 1 us/row to update a window.

    .venv/bin/python benchmarks/drift_compute.py --quick            # 3 seeds, no 1M case
    .venv/bin/python benchmarks/drift_compute.py                    # 20 seeds, 1M case, Evidently
    .venv/bin/python benchmarks/drift_compute.py --skip-evidently --profile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT))

import _evidently_drift as data  # noqa: E402  (numpy-only: make_data, to_frame, names)

EVIDENTLY_VENV = ROOT / ".venv-evidently"
EVIDENTLY_SPEC = ("evidently>=0.7,<0.8", "pandas<3")
EFFECT_FLOOR = 0.1
TARGET_SCIPY = 5.0
TARGET_EVIDENTLY = 80.0
TARGET_US_PER_ROW = 1.0


def log(msg: str = "") -> None:
    print(msg, flush=True)


def maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- Vigil --------------------------------------------------------------------------------

def build_reference(ref_df, detector: bool = False):
    """What the registry does (minus the model's predictions): schema, columns, edges, profile."""
    from models.frames import frame_to_columns
    from monitoring.stats.multivariate import PcaDetector
    from monitoring.stats.profile import Profile, edges_from_sample
    from monitoring.schema import ModelSchema, infer_feature_specs

    schema = ModelSchema(tuple(infer_feature_specs(ref_df)), task="regression")
    num, codes = frame_to_columns(ref_df, schema)
    det = PcaDetector.fit(num[:10000]) if detector else None
    prof = Profile.empty(schema, edges_from_sample(schema, num[:10000]), np.array([0.0]), detector=det)
    prof.update(num, codes, values=np.zeros(len(ref_df)),
                mv_errors=None if det is None else det.log_errors(num))
    return schema, prof


def vigil_window(prof, evaluator, num, codes):
    """Ingest prepared arrays into a fresh window and evaluate it: (report, timings)."""
    t0, c0 = time.perf_counter(), time.process_time()
    w = prof.empty_like()
    w.update(num, codes, values=np.zeros(num.shape[0]))
    t1, c1 = time.perf_counter(), time.process_time()
    rep = evaluator.evaluate(w)
    t2, c2 = time.perf_counter(), time.process_time()
    return rep, {"update_s": t1 - t0, "eval_s": t2 - t1, "total_s": t2 - t0,
                 "update_cpu": c1 - c0, "eval_cpu": c2 - c1, "cpu_s": c2 - c0}


def vigil_flags(rep, alpha: float) -> dict[str, dict]:
    return {f.feature: {"flag": f.flagged, "p": f.p_value, "p_holm": f.p_holm, "effect": f.effect,
                        "method": f.method, "p_flag": f.p_holm <= alpha} for f in rep.features}


# -- scipy ----------------------------------------------------------------------------------

def scipy_drift(ref_num, ref_codes, cur_num, cur_codes, alpha: float, n_levels: int = data.N_LEVELS):
    """Per column KS (numeric) / chi-square on the 2 x k table (categorical), Holm at alpha.
    Returns (p-values, Holm-adjusted p-values, flags) in column order."""
    from scipy.stats import chi2_contingency, ks_2samp

    from monitoring.stats.drift import holm

    p = []
    for j in range(ref_num.shape[1]):
        p.append(ks_2samp(ref_num[:, j], cur_num[:, j]).pvalue)
    for j in range(ref_codes.shape[1]):
        table = np.vstack([np.bincount(ref_codes[:, j], minlength=n_levels),
                           np.bincount(cur_codes[:, j], minlength=n_levels)])
        table = table[:, table.sum(axis=0) > 0]
        p.append(chi2_contingency(table, correction=False).pvalue)
    p = np.asarray(p, dtype=np.float64)
    ph = holm(p)
    return p, ph, ph <= alpha


# -- workers (each in a fresh process) ------------------------------------------------------

def worker(args) -> dict:
    n, cats, seed, alpha = args.n, args.cats, args.seed, args.alpha
    ref_num, ref_codes = data.make_data(seed, n, cats, 0)
    windows = [data.make_data(seed, n, cats, part) for part in (1, 2)]
    out: dict = {"method": args.worker, "n": n, "cats": cats}
    import scipy.stats  # noqa: F401  (imports are not part of either method's cost)

    import monitoring.stats.drift  # noqa: F401
    if args.worker == "vigil":
        from models.frames import frame_to_columns
        from monitoring.stats.evaluate import DriftConfig, WindowEvaluator

        ref_df = data.to_frame(ref_num, ref_codes)
        t = time.perf_counter()
        schema, prof = build_reference(ref_df)
        out["build_s"] = time.perf_counter() - t
        out["profile_json_bytes"] = len(json.dumps(prof.to_dict()))
        out["raw_reference_bytes"] = int(ref_num.nbytes + ref_codes.nbytes)
        # the validator's arrays (prepared untimed; codes follow the schema's category order)
        prepared = [frame_to_columns(data.to_frame(a, b), schema) for a, b in windows]
        del ref_df
        ev = WindowEvaluator(schema, prof, DriftConfig(alpha=alpha))
        run = lambda k: vigil_window(prof, ev, *prepared[k])  # noqa: E731
        if args.prepared:  # the service's start: nulls for full windows, filled before any window
            t, c = time.perf_counter(), time.process_time()
            out["prepare_entries"] = ev.prepare(n)
            out["prepare_s"], out["prepare_cpu"] = time.perf_counter() - t, time.process_time() - c
            _, out["prepared"] = run(0)
            return out
    elif args.worker == "scipy":
        run = lambda k: (None, _timed(scipy_drift, ref_num, ref_codes, *windows[k], alpha))  # noqa: E731
    else:
        raise SystemExit(f"unknown worker {args.worker}")

    rss0 = maxrss()
    if args.mem:
        tracemalloc.start()
        run(0)
        out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out
    if args.profile:
        import cProfile
        import io
        import pstats

        prof_c = cProfile.Profile()
        prof_c.enable()
        run(0)
        prof_c.disable()
        s = io.StringIO()
        pstats.Stats(prof_c, stream=s).sort_stats("tottime").print_stats(14)
        out["profile_cold"] = s.getvalue()
        prof_c = cProfile.Profile()
        prof_c.enable()
        for _ in range(3):
            run(1)
        prof_c.disable()
        s = io.StringIO()
        pstats.Stats(prof_c, stream=s).sort_stats("tottime").print_stats(14)
        out["profile_warm"] = s.getvalue()
        return out
    rep, out["cold"] = run(0)
    out["warm"] = [run(k % 2 ^ 1)[1] for k in range(args.repeats)]  # windows 2, 1, 2, ...
    out["maxrss_growth"] = maxrss() - rss0
    out["maxrss"] = maxrss()
    if args.worker == "vigil":
        out["drifted"] = list(rep.drifted)
        out["methods"] = sorted(set(ev.methods.values()))
        # the multivariate detector, apart: fit at registration; per window, log errors + test
        from monitoring.stats.multivariate import PcaDetector

        t = time.perf_counter()
        det = PcaDetector.fit(ref_num)
        out["pca_fit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sk = det.empty_sketch()
        sk.update(det.log_errors(prepared[0][0]))
        det.test(sk)
        out["pca_window_s"] = time.perf_counter() - t
    return out


def _timed(fn, *a) -> dict:
    t, c = time.perf_counter(), time.process_time()
    fn(*a)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"update_s": 0.0, "eval_s": wall, "total_s": wall, "update_cpu": 0.0, "eval_cpu": cpu, "cpu_s": cpu}


def ingest_worker(args) -> dict:
    """Per-row cost of (a) Profile.update on 100-row batches, (b) WindowManager.consume."""
    from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
    from monitoring.runtime.queue import MonitorItem
    from monitoring.store import Store
    from monitoring.intake.validation import ValidatedBatch
    from monitoring.runtime.windows import WindowConfig, WindowManager

    bs, nb = args.batch_rows, args.batches
    ref_num, ref_codes = data.make_data(0, 100_000, 5, 0)
    cur_num, cur_codes = data.make_data(0, bs * nb, 5, 1)
    rng = np.random.default_rng(1)
    labels = rng.standard_normal(bs * nb)
    batches = [(np.ascontiguousarray(cur_num[i * bs:(i + 1) * bs]), np.ascontiguousarray(cur_codes[i * bs:(i + 1) * bs]),
                labels[i * bs:(i + 1) * bs].copy()) for i in range(nb)]
    rows = bs * nb
    out: dict = {"batch_rows": bs, "batches": nb, "rows": rows}

    # (a) Profile.update, batch by batch
    _, prof = build_reference(data.to_frame(ref_num, ref_codes))
    best, best_wall = math.inf, math.inf
    for _ in range(5):
        w = prof.empty_like()
        t, c = time.perf_counter(), time.process_time()
        for num, codes, lab in batches:
            w.update(num, codes, values=lab)
        cpu, wall = time.process_time() - c, time.perf_counter() - t
        if cpu < best:
            best, best_wall = cpu, wall
    out["update_us_per_row"] = best / rows * 1e6
    out["update_wall_us_per_row"] = best_wall / rows * 1e6

    # (b) WindowManager.consume, end to end
    cat_names = data.categorical_names(5)
    cat_values = [{name: data.LEVELS[codes[:, j]] for j, name in enumerate(cat_names)} for _, codes, _ in batches]

    def consume_run(detector: bool, per_call: int, window_rows: int, log_rate: float | None = None) -> dict:
        schema, reference = build_reference(data.to_frame(ref_num, ref_codes), detector=detector)
        evaluator = WindowEvaluator(schema, reference, DriftConfig(alpha=args.alpha))
        warm = reference.empty_like()  # the null cache is filled once per window size: pre-fill it
        warm.update(cur_num[:window_rows], cur_codes[:window_rows], values=labels[:window_rows])
        evaluator.evaluate(warm)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{tmp}/v.db")
            extra = {}
            if log_rate is not None:  # the service's prediction log (one row per prediction, features sampled)
                from monitoring.runtime.predlog import PredictionLogger

                extra["prediction_log"] = PredictionLogger("bench", schema, log_rate, seed=0)
            wm = WindowManager(store, "bench", evaluator, WindowConfig(window_rows, 3600.0, flush_interval=0.5,
                                                                       max_pending_rows=10**9), **extra)
            phases = {k: 0.0 for k in ("_assign", "_write_log", "_write_partials", "_seal_if_old", "_evaluate_ready")}
            for name in phases:
                fn = getattr(wm, name, None)
                if fn is None:  # an older WindowManager without this phase
                    continue

                def timed(*a, _fn=fn, _name=name):
                    t0 = time.perf_counter()
                    try:
                        return _fn(*a)
                    finally:
                        phases[_name] += time.perf_counter() - t0
                setattr(wm, name, timed)
            ev_time = [0.0]
            ev_fn = evaluator.evaluate

            def timed_eval(*a, **k):
                t0 = time.perf_counter()
                try:
                    return ev_fn(*a, **k)
                finally:
                    ev_time[0] += time.perf_counter() - t0
            evaluator.evaluate = timed_eval
            now = time.time()
            items = [MonitorItem(f"req-{i}", now, ValidatedBatch(bs, num, codes, cat_values[i], None), lab, None, None)
                     for i, (num, codes, lab) in enumerate(batches)]
            t, c = time.perf_counter(), time.process_time()
            for i in range(0, len(items), per_call):
                wm.consume(items[i:i + per_call])
            wm.tick()
            elapsed, cpu = time.perf_counter() - t, time.process_time() - c
            st = wm.state()
            store.dispose()
        return {"detector": detector, "log_rate": log_rate, "per_call": per_call, "window_rows": window_rows,
                "seconds": elapsed,
                "us_per_row": elapsed / rows * 1e6, "cpu_us_per_row": cpu / rows * 1e6, "windows_evaluated": st.evaluated,
                "phases_us_per_row": {k: v / rows * 1e6 for k, v in phases.items()},
                "evaluate_us_per_row": ev_time[0] / rows * 1e6, "store_errors": st.store_errors}

    variants = [(False, 1, 1000), (False, 256, 1000), (True, 1, 1000), (True, 1, 1000, 0.1), (False, 1, 10_000)]
    out["consume"] = [min((consume_run(*v) for _ in range(2)), key=lambda r: r["seconds"]) for v in variants]
    if args.profile:
        import cProfile
        import io
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        consume_run(False, 1, 1000)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(16)
        out["profile_consume"] = s.getvalue()
    return out


# -- orchestration --------------------------------------------------------------------------

def run_worker(kind: str, n: int, cats: int, alpha: float, mem: bool = False, profile: bool = False,
               repeats: int = 3, extra: list[str] | None = None, prepared: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--n", str(n), "--cats", str(cats),
           "--alpha", str(alpha), "--repeats", str(repeats)] + (["--mem"] if mem else []) + \
          (["--profile"] if profile else []) + (["--prepared"] if prepared else []) + (extra or [])
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def evidently_python(skip: bool) -> tuple[str | None, str]:
    """Path to the Evidently venv's python (creating the venv if absent), or None and why."""
    if skip:
        return None, "skipped (--skip-evidently)"
    py = EVIDENTLY_VENV / "bin" / "python"
    check = [str(py), "-c", "import evidently, pandas; print(evidently.__version__, pandas.__version__)"]
    if py.exists():
        r = subprocess.run(check, capture_output=True, text=True)
        if r.returncode == 0:
            return str(py), "evidently %s, pandas %s" % tuple(r.stdout.split())
    log(f"setting up {EVIDENTLY_VENV.relative_to(ROOT)} (pip install {' '.join(EVIDENTLY_SPEC)}) ...")
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True, capture_output=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *EVIDENTLY_SPEC], check=True, capture_output=True,
                       text=True, timeout=900)
        r = subprocess.run(check, capture_output=True, text=True, check=True)
        return str(py), "evidently %s, pandas %s" % tuple(r.stdout.split())
    except (subprocess.SubprocessError, OSError) as exc:
        err = getattr(exc, "stderr", "") or str(exc)
        return None, f"could not be installed ({str(err).strip().splitlines()[-1][:200] if err else exc})"


def run_evidently(py: str, n: int, cats: int, seeds: list[int], windows: int, mem: bool = False) -> dict:
    cmd = [py, str(BENCH_DIR / "_evidently_drift.py"), "--n", str(n), "--cats", str(cats), "--windows", str(windows),
           "--seeds", *map(str, seeds)] + (["--mem"] if mem else [])
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"evidently run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def fmt_b(b: float | None) -> str:
    if b is None:
        return "-"
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 2**10:.0f} KiB"


def fmt_x(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.1f}x"


def _best(runs: list[dict]) -> dict:
    """The run with the least CPU time (on a shared machine the least disturbed one)."""
    return min(runs, key=lambda r: r["cpu_s"])


def timing_case(label: str, n: int, cats: int, args, evid_py: str | None) -> dict:
    log(f"\n== {label}: reference {n:,} rows vs current {n:,} rows, {data.N_NUMERIC} numeric + {cats} categorical ==")
    res: dict = {}
    cold_procs = args.cold_runs if n <= 100_000 else max(1, args.cold_runs - 1)
    repeats = args.repeats if n <= 100_000 else min(args.repeats, 3)
    for kind in ("vigil", "scipy"):
        log(f"  {kind}: timing ({cold_procs} fresh process(es) x 1 cold + {repeats} warm windows) ...")
        procs = [run_worker(kind, n, cats, args.alpha, repeats=repeats) for _ in range(cold_procs)]
        r = dict(procs[0])
        r["cold"] = _best([p["cold"] for p in procs])
        r["warm"] = _best([w for p in procs for w in p["warm"]])
        r["maxrss_growth"] = max(p["maxrss_growth"] for p in procs)
        r["tracemalloc_peak"] = run_worker(kind, n, cats, args.alpha, mem=True)["tracemalloc_peak"]
        if kind == "vigil":
            log(f"  {kind}: timing ({cold_procs} fresh process(es) x prepare({n:,}) untimed + 1 window) ...")
            pp = [run_worker(kind, n, cats, args.alpha, prepared=True) for _ in range(cold_procs)]
            r["prepared"] = _best([p["prepared"] for p in pp])
            r["prepare_cpu"] = min(p["prepare_cpu"] for p in pp)
            r["prepare_entries"] = pp[0]["prepare_entries"]
        res[kind] = r
    if evid_py:
        windows = 2
        log(f"  evidently: timing (1 fresh process x {windows} windows) ...")
        try:
            ev = run_evidently(evid_py, n, cats, [0], windows)
            mem = run_evidently(evid_py, n, cats, [0], 1, mem=True)
            runs = ev["runs"]
            as_t = lambda x: {"total_s": x["seconds"], "cpu_s": x["cpu_seconds"]}  # noqa: E731
            res["evidently"] = {"cold": as_t(runs[0]), "warm": as_t(runs[1]) if len(runs) > 1 else None,
                                "tracemalloc_peak": mem["tracemalloc_peak"],
                                "maxrss_growth": max(x["maxrss_after"] for x in runs) - runs[0]["maxrss_before"],
                                "drifted": runs[0]["drifted"], "version": ev["evidently"]}
        except RuntimeError as exc:
            log(f"  evidently failed: {str(exc).splitlines()[-1]}")
    v, s, e = res["vigil"], res["scipy"], res.get("evidently")
    log(f"  vigil reference profile build (registration; not in the times below): {fmt_s(v['build_s'])} wall; stored "
        f"profile {fmt_b(v['profile_json_bytes'])} JSON vs raw reference {fmt_b(v['raw_reference_bytes'])}")
    pr = v["prepared"]
    log(f"  vigil prepared (prepare({n:,}) untimed in a fresh process, then the first window): "
        f"{fmt_s(pr['cpu_s'])} CPU ({fmt_s(pr['update_cpu'])} + {fmt_s(pr['eval_cpu'])}), {fmt_s(pr['total_s'])} wall; "
        f"{fmt_x(s['cold']['cpu_s'], pr['cpu_s'])} scipy cold ({fmt_x(s['warm']['cpu_s'], pr['cpu_s'])} scipy warm); "
        f"prepare itself {fmt_s(v['prepare_cpu'])} CPU, {v['prepare_entries']} null distributions")
    log(f"  vigil methods: {', '.join(v['methods'])}; PCA detector (apart, not below): fit {fmt_s(v['pca_fit_s'])} on "
        f"the reference, {fmt_s(v['pca_window_s'])} per {n:,}-row window (log errors + test)")
    log("")
    hdr = (f"  {'method':<10} {'cold CPU':>9} {'cold wall':>10} {'warm CPU':>9} {'warm wall':>10}  "
           f"{'vigil CPU: ingest + eval, cold | warm':<40} {'peak mem':>9} {'RSS grow':>9}  {'vs scipy c/w':>13}  "
           f"{'vs evidently c/w':>17}")
    log(hdr)
    log("  " + "-" * (len(hdr) - 2))
    for kind in ("vigil", "scipy", "evidently"):
        r = res.get(kind)
        if r is None:
            log(f"  {kind:<10} {'n/a':>9}")
            continue
        cold, warm = r["cold"], r["warm"] or {}
        split = (f"{fmt_s(cold['update_cpu'])} + {fmt_s(cold['eval_cpu'])} | "
                 f"{fmt_s(warm['update_cpu'])} + {fmt_s(warm['eval_cpu'])}") if kind == "vigil" else ""
        vs_s = f"{fmt_x(s['cold']['cpu_s'], cold['cpu_s'])} / {fmt_x(s['warm']['cpu_s'], warm.get('cpu_s'))}"
        vs_e = (f"{fmt_x(e['cold']['cpu_s'], cold['cpu_s'])} / {fmt_x((e['warm'] or {}).get('cpu_s'), warm.get('cpu_s'))}"
                if e else "-")
        log(f"  {kind:<10} {fmt_s(cold['cpu_s']):>9} {fmt_s(cold['total_s']):>10} {fmt_s(warm.get('cpu_s')):>9} "
            f"{fmt_s(warm.get('total_s')):>10}  {split:<40} {fmt_b(r['tracemalloc_peak']):>9} "
            f"{fmt_b(r['maxrss_growth']):>9}  {vs_s:>13}  {vs_e:>17}")
    log("  times: CPU seconds of the timed call (process_time, all threads) and its wall time; the run with the least "
        "CPU time is kept.\n"
        "  speedup = the other method's CPU time / this one's (cold / warm); wall-time ratios are in the summary. "
        "peak mem = tracemalloc\n  peak of the cold call in its own fresh process; RSS grow = ru_maxrss growth over "
        "the timed calls (0: never above the inputs' high-water mark).")
    if e and e["warm"] and e["warm"]["cpu_s"] > 1.2 * e["warm"]["total_s"]:
        log("  (Evidently's CPU time exceeds its wall time: parts of it run on more than one thread)")
    log(f"  drifted (seed 0): vigil {v['drifted']}" + (f"; evidently {e['drifted']}" if e else ""))
    return res


def verdicts(args, evid_py: str | None) -> dict:
    from monitoring.stats.evaluate import DriftConfig, WindowEvaluator

    n, cats, alpha = 100_000, 5, args.alpha
    names = data.numeric_names() + data.categorical_names(cats)
    truth = set(data.drifted_truth(cats))
    log(f"\n== verdicts at {n:,} rows (+{cats} categorical), alpha={alpha}, {args.seeds} seeds: vigil vs scipy ==")
    from models.frames import frame_to_columns

    rows = {name: {"vigil": 0, "vigil_p": 0, "scipy": 0, "agree": 0, "agree_p": 0} for name in names}
    mismatches, p_only, per_seed = [], [], {}
    for seed in range(args.seeds):
        ref_num, ref_codes = data.make_data(seed, n, cats, 0)
        cur_num, cur_codes = data.make_data(seed, n, cats, 1)
        schema, prof = build_reference(data.to_frame(ref_num, ref_codes))
        cn, cc = frame_to_columns(data.to_frame(cur_num, cur_codes), schema)
        rep, _ = vigil_window(prof, WindowEvaluator(schema, prof, DriftConfig(alpha=alpha)), cn, cc)
        vf = vigil_flags(rep, alpha)
        p, ph, sf = scipy_drift(ref_num, ref_codes, cur_num, cur_codes, alpha)
        per_seed[seed] = {"vigil": sorted(k for k, x in vf.items() if x["flag"]),
                          "scipy": sorted(nm for nm, f in zip(names, sf) if f)}
        for j, name in enumerate(names):
            x = vf[name]
            r = rows[name]
            r["vigil"] += x["flag"]
            r["vigil_p"] += x["p_flag"]
            r["scipy"] += bool(sf[j])
            r["agree"] += x["flag"] == bool(sf[j])
            r["agree_p"] += x["p_flag"] == bool(sf[j])
            if x["flag"] != bool(sf[j]):
                if sf[j] and x["p_flag"]:
                    why = f"effect {x['effect']:.4f} < floor {EFFECT_FLOOR} (vigil's Holm p agrees)"
                elif sf[j]:
                    why = "vigil's binned test not significant after Holm"
                else:
                    why = "scipy not significant after Holm"
                mismatches.append((seed, name, x, float(p[j]), float(ph[j]), bool(sf[j]), why))
            elif x["p_flag"] != bool(sf[j]):
                p_only.append((seed, name, x, float(p[j]), float(ph[j]), bool(sf[j]),
                               f"verdicts agree: vigil's effect {x['effect']:.4f} < floor {EFFECT_FLOOR}"
                               if x["p_flag"] else "verdicts agree"))
    log(f"  flags per feature over {args.seeds} seeds (truth: {', '.join(sorted(truth))} drift; the rest do not)")
    log(f"  {'feature':<8} {'kind':<5} {'vigil':>6} {'vigil p-only':>13} {'scipy':>6} {'agree':>6} {'agree p-only':>13}")
    for name in names:
        r = rows[name]
        log(f"  {name:<8} {'num' if name.startswith('num') else 'cat':<5} {r['vigil']:>6} {r['vigil_p']:>13} "
            f"{r['scipy']:>6} {r['agree']:>6} {r['agree_p']:>13}" + ("   <- drifted" if name in truth else ""))
    total = args.seeds * len(names)
    agree = sum(r["agree"] for r in rows.values())
    agree_p = sum(r["agree_p"] for r in rows.values())
    log(f"  agreement: {agree}/{total} feature verdicts (vigil as configured: Holm AND effect >= {EFFECT_FLOOR}); "
        f"{agree_p}/{total} with vigil's Holm test alone ('p-only')")
    seeds_same = sum(per_seed[s]["vigil"] == per_seed[s]["scipy"] for s in per_seed)
    log(f"  identical drifted sets: {seeds_same}/{args.seeds} seeds")
    for title, lst in (("mismatches (vigil as configured vs scipy)", mismatches),
                       ("Holm-test-only disagreements (vigil p_holm <= alpha vs scipy)", p_only)):
        if not lst:
            log(f"  {title}: none")
            continue
        log(f"  {title}:")
        for seed, name, x, p, ph, sflag, why in lst:
            log(f"    seed {seed:>2} {name}: vigil {'FLAG' if x['flag'] else 'ok  '} ({x['method']}: p={x['p']:.3g}, "
                f"p_holm={x['p_holm']:.3g}, effect={x['effect']:.4f}) | scipy {'FLAG' if sflag else 'ok  '} "
                f"(p={p:.3g}, p_holm={ph:.3g}) -> {why}")
    out = {"rows": rows, "mismatches": len(mismatches), "agree": agree, "total": total, "per_seed": per_seed}
    # vs Evidently
    if evid_py and args.evidently_seeds > 0:
        seeds = list(range(min(args.evidently_seeds, args.seeds)))
        log(f"\n== verdicts vs Evidently DataDriftPreset ({len(seeds)} seeds) ==")
        try:
            ev = run_evidently(evid_py, n, cats, seeds, 1)
        except RuntimeError as exc:
            log(f"  evidently failed: {str(exc).splitlines()[-1]}")
            return out
        e_agree = e_total = 0
        for r in ev["runs"]:
            s = r["seed"]
            v_set, e_set, sc_set = set(per_seed[s]["vigil"]), set(r["drifted"]), set(per_seed[s]["scipy"])
            e_agree += len(names) - len(v_set ^ e_set)
            e_total += len(names)
            diff = sorted(v_set ^ e_set)
            log(f"  seed {s}: evidently {sorted(e_set)}; vigil {'same' if not diff else sorted(v_set)}; "
                f"scipy {'same' if sc_set == e_set else sorted(sc_set)}"
                + (f"; differ on {diff} (evidently scores {[round(r['scores'][d], 4) for d in diff]})" if diff else ""))
        methods = sorted(set(ev["runs"][0]["methods"].values()))
        log(f"  agreement vigil vs evidently: {e_agree}/{e_total} feature verdicts (evidently methods: {', '.join(methods)}"
            f"; flags when the distance >= 0.1, no p-value)")
        out["evidently_agree"], out["evidently_total"] = e_agree, e_total
    return out


def ingest_report(args) -> dict:
    log(f"\n== feeding a window from the queue: 25 features, {args.batches:,} batches x {args.batch_rows} rows ==")
    r = run_worker("ingest", 0, 5, args.alpha, profile=args.profile,
                   extra=["--batches", str(args.batches), "--batch-rows", str(args.batch_rows)])
    log(f"  (a) Profile.update per {args.batch_rows}-row batch: {r['update_us_per_row']:.2f} us/row CPU "
        f"({r['update_us_per_row'] * args.batch_rows:.0f} us per batch; wall {r['update_wall_us_per_row']:.2f} us/row)")
    log("  (b) WindowManager.consume end to end (SQLite store on a temp file, flush_interval=0.5, null cache "
        "pre-filled; the faster of 2 runs):")
    log(f"      {'variant':<72} {'wall us/row':>11} {'CPU us/row':>10} {'windows':>8}   wall us/row by phase: assign / "
        f"log / partials / seal / evaluate-ready (of which evaluate)")
    for c in r["consume"]:
        label = (f"window_rows={c['window_rows']}, {c['per_call']} item(s)/consume"
                 + (", +PCA detector" if c["detector"] else "")
                 + (f", +prediction log {c['log_rate']:g}" if c.get("log_rate") is not None else ""))
        ph = c["phases_us_per_row"]
        log(f"      {label:<72} {c['us_per_row']:>11.2f} {c['cpu_us_per_row']:>10.2f} {c['windows_evaluated']:>8}   "
            f"{ph['_assign']:.2f} / {ph['_write_log']:.2f} / "
            f"{ph['_write_partials']:.2f} / {ph['_seal_if_old']:.2f} / {ph['_evaluate_ready']:.2f} "
            f"({c['evaluate_us_per_row']:.2f})")
    if args.profile and "profile_consume" in r:
        log("\n  cProfile of consume (window_rows=1000, 1 item/consume), top by own time:")
        log("\n".join("    " + ln for ln in r["profile_consume"].splitlines() if ln.strip()))
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 seeds, no 1M case")
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--seeds", type=int, default=None, help="seeds for the verdict comparison (default 20; 3 with --quick)")
    ap.add_argument("--evidently-seeds", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=5, help="warm windows timed per process (least CPU time kept)")
    ap.add_argument("--cold-runs", type=int, default=None,
                    help="fresh processes per method for the cold time (least kept; default 3, 2 with --quick; "
                         "one fewer at 1M)")
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--batch-rows", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="also print cProfile top functions")
    ap.add_argument("--only", default="timing,verdicts,ingest",
                    help="comma-separated sections to run: timing, verdicts, ingest (default all)")
    # worker mode (internal)
    ap.add_argument("--worker", choices=("vigil", "scipy", "ingest"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=100_000, help=argparse.SUPPRESS)
    ap.add_argument("--cats", type=int, default=5, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mem", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepared", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        out = ingest_worker(args) if args.worker == "ingest" else worker(args)
        print(json.dumps(out))
        return 0

    if args.seeds is None:
        args.seeds = 3 if args.quick else 20
    if args.cold_runs is None:
        args.cold_runs = 2 if args.quick else 3
    import platform

    import pandas as pd
    import scipy

    log("Vigil drift compute benchmark" + (" (--quick)" if args.quick else ""))
    log(f"  python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, pandas {pd.__version__}; "
        f"{os.cpu_count()} CPU(s); alpha={args.alpha}, effect floor {EFFECT_FLOOR}")
    log(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared machine inflates wall "
        f"times; speedups use CPU time)")
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    evid_py, evid_note = evidently_python(args.skip_evidently or not (only & {"timing", "verdicts"}))
    log(f"  Evidently baseline: {evid_note}")
    t_start = time.perf_counter()
    cases = []
    if "timing" in only:
        cases.append(timing_case("100k rows + categorical", 100_000, 5, args, evid_py))
        if not args.quick:
            cases.append(timing_case("1M rows, numeric only", 1_000_000, 0, args, evid_py))
    if args.profile and "timing" in only:
        for n, cats in [(100_000, 5)] + ([] if args.quick else [(1_000_000, 0)]):
            p = run_worker("vigil", n, cats, args.alpha, profile=True)
            log(f"\n== cProfile, vigil at {n:,} rows: cold window (top by own time) ==")
            log("\n".join("    " + ln for ln in p["profile_cold"].splitlines() if ln.strip()))
            log(f"\n== cProfile, vigil at {n:,} rows: 3 warm windows ==")
            log("\n".join("    " + ln for ln in p["profile_warm"].splitlines() if ln.strip()))
    ver = verdicts(args, evid_py) if "verdicts" in only else None
    ing = ingest_report(args) if "ingest" in only else None

    log("\n== summary vs targets (reported, not asserted) ==")
    for case, label in zip(cases, ["100k+cat", "1M numeric"][:len(cases)]):
        v, s, e = case["vigil"], case["scipy"], case.get("evidently")
        for phase in ("cold", "warm"):
            vs, vs_w = s[phase]["cpu_s"] / v[phase]["cpu_s"], s[phase]["total_s"] / v[phase]["total_s"]
            line = (f"  {label:<11} {phase}: {vs:5.1f}x faster than scipy (wall {vs_w:5.1f}x; target >= "
                    f"{TARGET_SCIPY:g}x: {'met' if min(vs, vs_w) >= TARGET_SCIPY else 'met on CPU' if vs >= TARGET_SCIPY else 'NOT met'})")
            if e and (e.get(phase) or {}).get("cpu_s"):
                ve, ve_w = e[phase]["cpu_s"] / v[phase]["cpu_s"], e[phase]["total_s"] / v[phase]["total_s"]
                line += (f"; {ve:6.1f}x faster than Evidently (wall {ve_w:6.1f}x; target >= {TARGET_EVIDENTLY:g}x: "
                         f"{'met' if min(ve, ve_w) >= TARGET_EVIDENTLY else 'met on CPU' if ve >= TARGET_EVIDENTLY else 'met on wall' if ve_w >= TARGET_EVIDENTLY else 'NOT met'})")
            log(line)
            if phase == "cold":
                pr = v["prepared"]
                vs, vs_w = s["cold"]["cpu_s"] / pr["cpu_s"], s["cold"]["total_s"] / pr["total_s"]
                log(f"  {label:<11} prepared (first window after prepare(), as the service starts): {vs:5.1f}x faster "
                    f"than scipy cold (wall {vs_w:5.1f}x; target >= {TARGET_SCIPY:g}x: "
                    f"{'met' if min(vs, vs_w) >= TARGET_SCIPY else 'met on CPU' if vs >= TARGET_SCIPY else 'NOT met'})")
    if ver:
        log(f"  verdicts vs scipy: {ver['agree']}/{ver['total']} agree ({ver['mismatches']} mismatches, see above)"
            + (f"; vs Evidently: {ver['evidently_agree']}/{ver['evidently_total']}" if "evidently_agree" in ver else ""))
    if ing:
        u = ing["update_us_per_row"]
        c1 = ing["consume"][0]["us_per_row"]
        log(f"  window update: Profile.update {u:.2f} us/row CPU (target <= {TARGET_US_PER_ROW:g}: "
            f"{'met' if u <= TARGET_US_PER_ROW else 'NOT met'}); full consume path {c1:.2f} us/row wall "
            f"({ing['consume'][0]['cpu_us_per_row']:.2f} CPU) at window_rows=1000 "
            f"({'met' if c1 <= TARGET_US_PER_ROW else 'NOT met'})")
        svc = [c for c in ing["consume"] if c.get("log_rate") is not None]
        if svc:
            log(f"  as the service runs it (window_rows=1000, PCA detector, prediction log at 0.1): "
                f"{svc[0]['us_per_row']:.2f} us/row wall ({svc[0]['cpu_us_per_row']:.2f} CPU)")
    log(f"  load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"total benchmark time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
