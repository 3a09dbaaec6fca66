"""Calibration of the drift verdicts, measured through the whole evaluation path.

Streams of windows (exact nulls, near-nulls and shifts) are drawn for a model with one
feature of each shape (normal, t(2), Lomax, discrete, zero-inflated, nullable, a 50-category
Zipf and a 5-category feature) and a 3-class prediction, profiled exactly as a registered
model is (reference sample -> schema, bin edges, PCA detector, Profile), then judged by
:class:`~monitoring.stats.evaluate.WindowEvaluator`. For each rule it prints the rate of
flagged windows with Clopper-Pearson 95 % bounds (``scipy.stats.binomtest``), the chance
of n consecutive flagged windows on one reference (E[p_ref^n], estimated per reference:
windows share the reference, so this is not p^n), and compares it with the per-rule,
per-window budget b = 1 / (6 x 2016). It also prints the Wasserstein p-value's tail, and
the smallest detected shift at 1,000-row windows against scipy's KS on the raw rows.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/calibration_drift.py            # full (minutes)
    PYTHONPATH=$PWD .venv/bin/python benchmarks/calibration_drift.py --fast     # a few seconds
    ... --markdown docs/calibration_drift.md                                     # write the tables

Fixed seeds: the same command prints the same figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as ss

from models.frames import frame_to_columns
from monitoring.schema import ModelSchema, infer_feature_specs
from monitoring.stats import drift as D
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.profile import Profile, edges_from_sample
from monitoring.stats.sketches import quantile_edges

BUDGET = 1 / (6 * 2016)
NUMERIC = ("normal", "t2", "lomax", "discrete", "zero_inflated", "nullable")
CATEGORICAL = ("zipf50", "five")
FIVE = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
ZIPF = 1 / np.arange(1, 51)
ZIPF = ZIPF / ZIPF.sum()
CLASSES = np.array([0.6, 0.3, 0.1])
#: robust sd (IQR / 1.349) of each numeric shape: shifts are given in these units
ROBUST_SD = {"normal": 1.0, "t2": 2 * 0.8165 / 1.349, "lomax": (4 ** (1 / 3) - (4 / 3) ** (1 / 3)) / 1.349,
             "nullable": 1.0}


@dataclass(frozen=True)
class Stream:
    """What changes in the windows: numeric location shifts (robust sds), categorical share
    moves (points, from the first category to the second), the class mix."""

    shift: dict = dataclasses.field(default_factory=dict)
    five_points: float = 0.0
    class_points: float = 0.0


def _numeric(rng, shape: str, n: int, shift: float = 0.0) -> np.ndarray:
    if shape == "normal":
        x = rng.normal(size=n)
    elif shape == "t2":
        x = rng.standard_t(2, size=n)
    elif shape == "lomax":
        x = rng.pareto(3.0, size=n)
    elif shape == "discrete":
        x = rng.poisson(3.0, size=n).astype(np.float64)
    elif shape == "zero_inflated":
        x = np.where(rng.random(n) < 0.6, 0.0, rng.lognormal(size=n))
    else:  # nullable
        x = rng.normal(size=n)
        x[rng.random(n) < 0.1] = np.nan
    return x + shift * ROBUST_SD.get(shape, 1.0)


def _shares(base: np.ndarray, points: float) -> np.ndarray:
    p = base.copy()
    p[0] -= points / 100
    p[1] += points / 100
    return p


def rows(rng, n: int, stream: Stream = Stream()) -> tuple[pd.DataFrame, np.ndarray]:
    """A frame of ``n`` rows and their class codes."""
    df = pd.DataFrame({s: _numeric(rng, s, n, stream.shift.get(s, 0.0)) for s in NUMERIC})
    df["zipf50"] = rng.choice(50, size=n, p=ZIPF)
    df["five"] = rng.choice(5, size=n, p=_shares(FIVE, stream.five_points))
    classes = rng.choice(3, size=n, p=_shares(CLASSES, stream.class_points))
    return df, classes


class Model:
    """A reference profiled as at registration, and a fast path from raw rows to windows."""

    def __init__(self, rng, n_ref: int, config: DriftConfig):
        df, classes = rows(rng, n_ref)
        self.frame = df
        specs = [dataclasses.replace(s, accepts_unseen=True) if s.kind == "categorical" else s
                 for s in infer_feature_specs(df, categorical_hint=CATEGORICAL)]
        self.schema = ModelSchema(tuple(specs), task="classification", classes=("a", "b", "c"))
        num, codes = frame_to_columns(df, self.schema)
        self.detector = PcaDetector.fit(num)
        prof = Profile.empty(self.schema, edges_from_sample(self.schema, num), detector=self.detector)
        self._update(prof, num, codes, classes)
        self.reference = prof
        self.evaluator = WindowEvaluator(self.schema, prof, config)
        # category value -> code (-2: a value the reference never saw)
        self._lookup = []
        for f in self.schema.categorical:
            table = np.full(64, -2, dtype=np.int32)
            table[np.asarray(f.categories, dtype=np.int64)] = np.arange(len(f.categories))
            self._lookup.append(table)

    def _update(self, prof, num, codes, classes):
        proba = np.full((len(classes), 3), 0.2)
        proba[np.arange(len(classes)), classes] = 0.6
        prof.update(num, codes, class_codes=classes, proba=proba,
                    mv_errors=None if self.detector is None else self.detector.log_errors(num))

    def window(self, df: pd.DataFrame, classes: np.ndarray):
        num = df[list(NUMERIC)].to_numpy(dtype=np.float64)
        codes = np.column_stack([t[df[c].to_numpy()] for t, c in zip(self._lookup, CATEGORICAL)])
        w = self.reference.empty_like()
        self._update(w, num, codes, classes)
        return self.evaluator.evaluate(w)


def _flags(report) -> dict[str, bool | float]:
    out: dict[str, bool | float] = {f"feature:{f.feature}": f.flagged for f in report.features}
    out.update({f"p:{f.feature}": f.p_value for f in report.features})
    out.update({f"e:{f.feature}": f.effect for f in report.features})
    out["feature_drift (any)"] = bool(report.drifted)
    out["multivariate_drift"] = bool(report.multivariate and report.multivariate.flagged)
    out["prediction_drift"] = bool(report.predictions and report.predictions.flagged)
    return out


def run_stream(n_ref: int, n_win: int, refs: int, windows: int, stream: Stream, seed: int,
               config: DriftConfig) -> dict[str, np.ndarray]:
    """Flags per rule: a (refs, windows) boolean array each (windows on one reference in order)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i in range(refs):
        model = Model(rng, n_ref, config)
        for j in range(windows):
            for rule, flag in _flags(model.window(*rows(rng, n_win, stream))).items():
                kind = np.float64 if rule[:2] in ("p:", "e:") else bool
                out.setdefault(rule, np.zeros((refs, windows), dtype=kind))[i, j] = flag
    return out


def cp(k: int, n: int) -> tuple[float, float]:
    ci = ss.binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def in_a_row(flags: np.ndarray, n: int) -> float:
    """E over references of p_ref^n, p_ref the reference's flagged share (the chance that
    n given consecutive windows all flag, for windows independent given the reference)."""
    return float((flags.mean(axis=1) ** n).mean())


def null_table(cfg: DriftConfig, sizes, refs, windows, seed=1) -> tuple[list[dict], list[dict]]:
    """Per rule: flagged rates and runs; per feature: raw p-value rates (the second list)."""
    rows_out, raw = [], []
    for n_ref, n_win in sizes:
        t0 = time.perf_counter()
        flags = run_stream(n_ref, n_win, refs, windows, Stream(), seed + n_ref + n_win, cfg)
        for rule in ("feature_drift (any)", "prediction_drift", "multivariate_drift"):
            f = flags[rule]
            k, n = int(f.sum()), f.size
            lo, hi = cp(k, n)
            rows_out.append(dict(ref=n_ref, win=n_win, rule=rule, flagged=k, windows=n, rate=k / n, lo=lo, hi=hi,
                                 p2=in_a_row(f, 2), p3=in_a_row(f, 3)))
        worst = max((k for k in flags if k.startswith("feature:")), key=lambda k: flags[k].mean())
        rows_out.append(dict(ref=n_ref, win=n_win, rule=f"worst {worst}", flagged=int(flags[worst].sum()),
                             windows=flags[worst].size, rate=flags[worst].mean(), lo=cp(int(flags[worst].sum()), flags[worst].size)[0],
                             hi=cp(int(flags[worst].sum()), flags[worst].size)[1], p2=in_a_row(flags[worst], 2),
                             p3=in_a_row(flags[worst], 3)))
        for name in NUMERIC + CATEGORICAL:
            p = flags[f"p:{name}"]
            k1, k2 = int((p < cfg.alpha).sum()), int((p < cfg.alpha / 26).sum())
            k3 = int((flags[f"e:{name}"] >= cfg.effect_floor).sum())
            raw.append(dict(ref=n_ref, win=n_win, feature=name, n=p.size, alpha=k1 / p.size, alpha_hi=cp(k1, p.size)[1],
                            alpha26=k2 / p.size, alpha26_hi=cp(k2, p.size)[1], floor=k3 / p.size))
        print(f"  null ref={n_ref} win={n_win}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return rows_out, raw


NEAR_NULL = Stream(shift={s: 0.02 for s in NUMERIC}, five_points=1.0, class_points=2.0)
SHIFTED = Stream(shift={"normal": 0.3}, five_points=10.0)


def stream_table(cfg, sizes, refs, windows, seed=2) -> list[dict]:
    out = []
    for label, stream in (("near-null", NEAR_NULL), ("shift 0.3 sd + 10 points", SHIFTED)):
        for n_ref, n_win in sizes:
            flags = run_stream(n_ref, n_win, refs, windows, stream, seed + n_ref + n_win, cfg)
            rates = {k: float(v.mean()) for k, v in flags.items() if k[:2] not in ("p:", "e:")}
            out.append(dict(stream=label, ref=n_ref, win=n_win, windows=refs * windows, **rates))
    return out


def tail_table(trials: int, refs: int, seed=3) -> list[dict]:
    """P(p < alpha/26) and P(p < alpha) of the Wasserstein test alone at 50-row windows
    (5,000-row reference), each window drawn afresh from the population."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in ("normal", "lomax", "t2"):
        small = tiny = 0
        for _ in range(refs):
            ref = _numeric(rng, shape, 5000)
            edges = np.unique(np.concatenate([[ref.min()], quantile_edges(ref, 30), [np.nextafter(ref.max(), np.inf)]]))
            rc = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
            scale = D.robust_scale(edges, rc)
            nulls = D.NullCache()
            for _ in range(trials // refs):
                w = np.bincount(np.searchsorted(edges, _numeric(rng, shape, 50), side="right"), minlength=edges.size + 1)
                p = D.wasserstein(rc, w, edges=edges, scale=scale, key=(shape,), nulls=nulls).p_value
                small += p < 0.01
                tiny += p < 0.01 / 26
        out.append(dict(shape=shape, trials=trials, p_lt_alpha=small / trials, ci_alpha=cp(small, trials),
                        p_lt_alpha26=tiny / trials, ci_alpha26=cp(tiny, trials)))
    return out


def smallest_shift(cfg, shapes, n_ref, n_win, refs, windows, grid, seed=4) -> list[dict]:
    """Smallest shift (robust sds, on the grid) flagged in >= 50 % of windows: the engine
    (its Holm family over all features) vs scipy's ks_2samp on the raw rows at alpha / m
    (Holm's first step with one drifted feature among m)."""
    m = len(NUMERIC) + len(CATEGORICAL)
    out = []
    for shape in shapes:
        ours = ks = None
        for delta in grid:
            rng = np.random.default_rng(seed)
            hits = ks_hits = 0
            for _ in range(refs):
                model = Model(rng, n_ref, cfg)
                for _ in range(windows):
                    df, classes = rows(rng, n_win, Stream(shift={shape: delta}))
                    hits += model.window(df, classes).features[NUMERIC.index(shape)].flagged
                    a, b = model.frame[shape].dropna().to_numpy(), df[shape].dropna().to_numpy()
                    ks_hits += ss.ks_2samp(a, b).pvalue <= cfg.alpha / m
            n = refs * windows
            if ours is None and hits / n >= 0.5:
                ours = delta
            if ks is None and ks_hits / n >= 0.5:
                ks = delta
            if ours is not None and ks is not None:
                break
        out.append(dict(shape=shape, ref=n_ref, win=n_win, vigil=ours, scipy_ks=ks,
                        ratio=(ours / ks) if ours and ks else None))
    return out


def markdown(null_rows, raw, streams, tails, shifts, cfg, args) -> str:
    b = BUDGET
    lines = [f"# Drift calibration (generated by `benchmarks/calibration_drift.py{' --fast' if args.fast else ''}`)", "",
             f"alpha {cfg.alpha}, effect floor {cfg.effect_floor}; budget b = 1/(6 x 2016) = {b:.2e} per rule "
             f"and window; 95 % Clopper-Pearson bounds; P(2/3 in a row) = E[p_ref^n] over references.", "",
             "The Clopper-Pearson bounds treat windows as independent, but each row's windows share a few "
             "references, and a reference that sits away from its population flags many of its windows: the "
             "per-window rate's real uncertainty is larger, and E[p_ref^n] (not rate^n) is the chance of n in a row.",
             "",
             "## Exact nulls", "",
             "| reference | window | rule | flagged / windows | rate [95 % CI] | P(2 in a row) | P(3 in a row) | "
             "3 in a row vs b |", "|---|---|---|---|---|---|---|---|"]
    for r in null_rows:
        lines.append(f"| {r['ref']:,} | {r['win']:,} | {r['rule']} | {r['flagged']} / {r['windows']} | "
                     f"{r['rate']:.2e} [{r['lo']:.1e}, {r['hi']:.1e}] | {r['p2']:.1e} | {r['p3']:.1e} | "
                     f"{r['p3'] / b:.2f} b |")
    lines += ["", "## Raw per-feature p-values on exact nulls (before Holm and the floor)", "",
              f"P(p < alpha) against {cfg.alpha:g} and P(p < alpha/26) against {cfg.alpha / 26:.2e} "
              "(Holm's first step at 26 features), with 95 % upper bounds.", "",
              "| reference | window | feature | windows | P(p < alpha) [upper] | P(p < alpha/26) [upper] | "
              "P(effect >= floor) |", "|---|---|---|---|---|---|---|"]
    for r in raw:
        lines.append(f"| {r['ref']:,} | {r['win']:,} | {r['feature']} | {r['n']} | {r['alpha']:.2e} "
                     f"[{r['alpha_hi']:.1e}] | {r['alpha26']:.2e} [{r['alpha26_hi']:.1e}] | {r['floor']:.3f} |")
    lines += ["", "## Near-null and shifted streams (share of windows flagged)", "",
              "| stream | reference | window | windows | feature_drift (any) | normal | five | prediction | "
              "multivariate |", "|---|---|---|---|---|---|---|---|---|"]
    for s in streams:
        lines.append(f"| {s['stream']} | {s['ref']:,} | {s['win']:,} | {s['windows']} | {s['feature_drift (any)']:.3f} | "
                     f"{s['feature:normal']:.3f} | {s['feature:five']:.3f} | {s['prediction_drift']:.3f} | "
                     f"{s['multivariate_drift']:.3f} |")
    lines += ["", "## Wasserstein p-value tail (50-row windows, 5,000-row reference, one feature)", "",
              "| shape | windows | P(p < 0.01) [95 % CI] | P(p < 0.01/26) [95 % CI] |", "|---|---|---|---|"]
    for t in tails:
        lines.append(f"| {t['shape']} | {t['trials']} | {t['p_lt_alpha']:.2e} [{t['ci_alpha'][0]:.1e}, "
                     f"{t['ci_alpha'][1]:.1e}] | {t['p_lt_alpha26']:.2e} [{t['ci_alpha26'][0]:.1e}, "
                     f"{t['ci_alpha26'][1]:.1e}] |")
    lines += ["", "## Smallest detected shift (>= 50 % of windows), robust sds", "",
              "| shape | reference | window | Vigil | scipy ks_2samp on raw rows (alpha/m) | ratio |",
              "|---|---|---|---|---|---|"]
    for s in shifts:
        ratio = f"{s['ratio']:.2f}" if s["ratio"] else "-"
        lines.append(f"| {s['shape']} | {s['ref']:,} | {s['win']:,} | {s['vigil']} | {s['scipy_ks']} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="a small subset (seconds)")
    ap.add_argument("--markdown", help="write the tables to this file")
    args = ap.parse_args(argv)
    cfg = DriftConfig()
    if args.fast:
        sizes, refs, windows = [(5000, 1000)], 2, 20
        ssizes, srefs, swin = [(50_000, 20_000)], 1, 3
        tails = tail_table(2000, 2)
        shifts = []
    else:
        sizes = [(r, w) for r in (300, 5000, 50_000) for w in (50, 1000, 20_000)]
        refs, windows = 12, 100
        ssizes, srefs, swin = [(50_000, 1000), (50_000, 20_000), (5000, 20_000)], 3, 10
        tails = tail_table(30_000, 10)
        grid = [0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.17, 0.2, 0.25, 0.3, 0.4, 0.6, 0.8]
        shifts = smallest_shift(cfg, ("normal", "t2", "lomax", "nullable"), 50_000, 1000, 2, 20, grid)
    null_rows, raw = null_table(cfg, sizes, refs, windows)
    streams = stream_table(cfg, ssizes, srefs, swin)
    text = markdown(null_rows, raw, streams, tails, shifts, cfg, args)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
