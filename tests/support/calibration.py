"""Calibration streams for the rate and performance rules: exact-null, near-null and
shifted streams through the rules' real observers and the alert state machine, with the
sampling error of the reference (or validation set) drawn afresh for every stream.

How a stream runs. For each of ``refs`` references (drawn from the true distribution):
the rule's real observer (:func:`monitoring.alerts.observers.observe_window`, which runs
the series' test and effect floor) is asked where it starts calling a window's count
abnormal; these statistics read only counts, and are monotone in them, so a binary search
over the count gives the exact decision boundary for that reference (it is checked again
on real windows). ``windows`` window counts are then drawn from the true window
distribution, and the abnormal flags go through :func:`monitoring.alerts.step` (the state
machine every served model runs) to count alerts that start firing. The same boundary
also gives each reference's exact conditional probability of an abnormal window
(binomial tails), so the harness reports the semi-analytic rate ``E_ref[P(abnormal |
ref)^n]`` for a rule that waits for ``n`` windows with its interval over the references
(iid), the alerts the state machine started, and a Clopper-Pearson interval on the first
window of each stream (windows of one stream share its reference, so only those are
independent draws).

Used by ``benchmarks/calibration_quality.py`` (the full grid) and by the fast subset in
``tests/monitoring/alerts/test_calibration.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import betabinom, binom, binomtest, norm

from monitoring.alerts import AlertState, RuleContext, RuleSpec, step
from monitoring.alerts.observers import observe_window
from monitoring.stats import rates as R

KINDS = ("missing", "out_of_range", "unseen", "class_share_rare", "class_share_balanced")
SERIES = {"missing": "quality.missing_rate", "out_of_range": "quality.out_of_range_rate",
          "unseen": "quality.unseen_rate", "class_share_rare": "prediction.class_share",
          "class_share_balanced": "prediction.class_share"}
#: What each scenario does to the window (the reference is always the unchanged distribution).
SCENARIOS = {
    "missing": {"null": "10 % missing", "near": "11 % (+1 point)", "shift": "22 %"},
    "out_of_range": {"null": "N(0, 1)", "near": "mean +0.02 sd", "shift": "2 % sentinel values below the range"},
    "unseen": {"null": "Zipf, 50 categories", "near": "seen categories' shares moved +-1 point (no new values)",
               "shift": "a new category at 5 %"},
    "class_share_rare": {"null": "1 % positive", "near": "1.2 %", "shift": "3 %"},
    "class_share_balanced": {"null": "50 %", "near": "52 % (+2 points)", "shift": "60 %"},
}
ZIPF = 1.0 / np.arange(1, 51)
ZIPF /= ZIPF.sum()


@dataclass(frozen=True)
class Outcome:
    kind: str
    scenario: str
    reference: int
    window: int
    windows: int          # windows run through the state machine
    alerts: int           # transitions to firing
    expected: float       # E_ref[P(abnormal | ref)^for_windows]: semi-analytic rate per window
    sd: float             # sd of P(abnormal | ref)^for_windows over the references
    refs: int
    first: int            # streams whose first window was abnormal (one Bernoulli per reference: iid)

    @property
    def rate(self) -> float:
        return self.alerts / self.windows

    def interval(self, z: float = 2.576) -> tuple[float, float]:
        """Interval of the semi-analytic rate over the references (iid): mean +- z sd / sqrt(refs)."""
        half = z * self.sd / math.sqrt(self.refs)
        return max(0.0, self.expected - half), self.expected + half

    def first_window_interval(self, level: float = 0.99) -> tuple[float, float]:
        """Clopper-Pearson interval of the abnormal share of first windows (one per reference,
        so independent draws; later windows of a stream share its reference)."""
        ci = binomtest(self.first, self.refs).proportion_ci(confidence_level=level, method="exact")
        return float(ci.low), float(ci.high)


def rule_for(kind: str, band_rate: float, effect_floor: float | None = None, for_windows: int = 1) -> RuleSpec:
    return RuleSpec(name=f"cal_{kind}", series=SERIES[kind], outside_band=True, band_rate=band_rate,
                    effect_floor=effect_floor, for_windows=for_windows, resolve_windows=2,
                    label="1" if kind.startswith("class_share") else None)


def _ctx(n: int, singletons: tuple[int, int, int] = (0, 0, 0)) -> RuleContext:
    return RuleContext(features=("x",), classes=("0", "1"), metrics=("accuracy",), reference_rows=n,
                       drift_alpha=0.01, error_rate=0.01, reference_singletons={"x": singletons})


def _quality(m: int, n: int, key: str, share: float, ref_missing: float = 0.0) -> dict:
    q = {"feature": "x", "missing_rate": 0.0, "reference_missing_rate": ref_missing, "out_of_range_rate": None,
         "unseen_rate": None}
    q[key] = share
    return {"rows": m, "reference_rows": n, "too_small": False, "quality": [q]}


def _classes(m: int, n: int, share: float, ref: float) -> dict:
    return {"rows": m, "reference_rows": n, "too_small": False, "predictions": {
        "class_share": {"0": 1 - share, "1": share}, "reference_class_share": {"0": 1 - ref, "1": ref}}}


@dataclass(frozen=True)
class Reference:
    """One reference sample: how to build a window's report from its count, the model
    context, the true window rate under each scenario, and (Beta prior, reference rate)
    for a first guess at the decision boundary."""

    report: Callable[[int, int], dict]
    ctx: RuleContext
    truth: dict[str, float]
    prior: tuple[float, float]
    p0: float


def draw_reference(kind: str, n: int, rng: np.random.Generator) -> Reference:
    if kind == "missing":
        r = rng.binomial(n, 0.10)
        return Reference(lambda k, m: _quality(m, n, "missing_rate", k / m, r / n), _ctx(n),
                         {"null": 0.10, "near": 0.11, "shift": 0.22}, R.share_prior(r, n), r / n)
    if kind == "out_of_range":
        x = rng.normal(size=n)
        lo, hi = x.min(), x.max()
        q = float(norm.cdf(lo) + norm.sf(hi))
        near = float(norm.cdf(lo - 0.02) + norm.sf(hi - 0.02))
        prior = R.out_of_range_prior(n)
        return Reference(lambda k, m: _quality(m, n, "out_of_range_rate", k / m), _ctx(n),
                         {"null": q, "near": near, "shift": 0.02 + 0.98 * q}, prior, R.prior_mean(prior))
    if kind == "unseen":
        counts = rng.multinomial(n, ZIPF)
        u = float(ZIPF[counts == 0].sum())
        once, twice = int((counts == 1).sum()), int((counts == 2).sum())
        prior = R.unseen_prior(once, twice, 0, n)
        return Reference(lambda k, m: _quality(m, n, "unseen_rate", k / m), _ctx(n, (once, twice, 0)),
                         {"null": u, "near": u, "shift": 0.05 + 0.95 * u}, prior,
                         R.prior_mean(prior))
    p0, near, shift = (0.01, 0.012, 0.03) if kind == "class_share_rare" else (0.5, 0.52, 0.6)
    r = rng.binomial(n, p0)
    return Reference(lambda k, m: _classes(m, n, k / m, r / n), _ctx(n), {"null": p0, "near": near, "shift": shift},
                     R.share_prior(r, n), r / n)


def _abnormal(rule: RuleSpec, ref: Reference, k: int, m: int) -> bool:
    obs = observe_window(rule, ref.report(k, m), ref.ctx)
    return bool(next(iter(obs.values())).outside) if obs else False


def _settle(abn: Callable[[int], bool], guess: int, up: bool, lo: int, hi: int) -> int:
    """The edge of the abnormal region nearest ``guess``: the first abnormal count going up
    (``up``) or the last going down, searched within [lo, hi]."""
    inside = (lambda k: k >= guess) if up else (lambda k: k <= guess)
    guess = min(max(guess, lo), hi)
    step = 1
    if abn(guess):                                   # move towards the normal side until normal
        while True:
            nxt = guess - step if up else guess + step
            if nxt < lo or nxt > hi or not abn(nxt):
                a, b = (nxt, guess)
                break
            guess, step = nxt, step * 2
    else:
        while True:
            nxt = guess + step if up else guess - step
            if nxt < lo or nxt > hi:
                return hi + 1 if up else lo - 1      # never abnormal on this side
            if abn(nxt):
                a, b = guess, nxt
                break
            guess, step = nxt, step * 2
    del inside
    while abs(b - a) > 1:                            # a normal, b abnormal
        mid = (a + b) // 2
        a, b = (a, mid) if abn(mid) else (mid, b)
    return b


def boundary(rule: RuleSpec, ref: Reference, m: int) -> tuple[int, int]:
    """(lo, hi): the observer calls a window count k abnormal exactly when k <= lo or k >= hi
    (lo = -1: a one-sided rule). Starts from the formula's guess and settles it against the
    observer itself (a few calls, or a search if the guess is off)."""
    h = rule.effect_floor if rule.effect_floor is not None else ref.ctx.rate_effect_floor
    rate = rule.band_rate
    two = rule.series == "prediction.class_share"
    d = betabinom(m, *ref.prior)
    sig = int(d.isf(rate / 2 if two else rate)) + 1
    h = max(h, h / 2 + float(norm.isf(rate / 2 if two else rate)) * math.sqrt(1 / m + 1 / (sum(ref.prior) + 1)))
    hi_guess = max(sig, R.floor_count(m, ref.p0, min(h, math.pi)))

    def abn(k: int) -> bool:
        return _abnormal(rule, ref, k, m)

    center = int(round(ref.p0 * m))
    hi = _settle(abn, hi_guess, True, center + 1, m)
    if not two:
        return -1, hi
    phi = math.asin(math.sqrt(ref.p0)) - h / 2
    floor_lo = math.floor((math.sin(phi) ** 2 if phi > 0 else -1.0) * m)
    lo_guess = min(int(d.ppf(rate / 2)) - 1, floor_lo)
    return _settle(abn, lo_guess, False, 0, center - 1), hi


def run(kind: str, n: int, m: int, rule: RuleSpec, refs: int, windows: int, seed: int = 0,
        check: int = 2) -> dict[str, Outcome]:
    """``refs`` streams of ``windows`` windows for each scenario, one reference per stream
    shared by the three scenarios (see the module docstring). {scenario: outcome}."""
    rng = np.random.default_rng([seed, KINDS.index(kind), n, m])
    alerts = {s: 0 for s in SCENARIOS[kind]}
    first = {s: 0 for s in SCENARIOS[kind]}
    probs: dict[str, list[float]] = {s: [] for s in SCENARIOS[kind]}
    for _ in range(refs):
        ref = draw_reference(kind, n, rng)
        lo, hi = boundary(rule, ref, m)
        for scenario in SCENARIOS[kind]:
            p = min(max(ref.truth[scenario], 0.0), 1.0)
            p_abn = float(binom.sf(hi - 1, m, p)) + (float(binom.cdf(lo, m, p)) if lo >= 0 else 0.0)
            probs[scenario].append(p_abn ** rule.for_windows)
            k = rng.binomial(m, p, size=windows)
            flags = (k <= lo) | (k >= hi)
            first[scenario] += bool(flags[0])
            for i in range(min(check, windows)):     # the boundary is the observer's own decision
                assert flags[i] == _abnormal(rule, ref, int(k[i]), m), (kind, scenario, n, m, k[i], lo, hi)
            if flags.any():
                alerts[scenario] += _fired(rule, flags)
    return {s: Outcome(kind, s, n, m, refs * windows, alerts[s], float(np.mean(probs[s])),
                       float(np.std(probs[s], ddof=1)) if refs > 1 else 0.0, refs, first[s]) for s in SCENARIOS[kind]}


def _fired(rule: RuleSpec, flags: np.ndarray) -> int:
    st, fired = AlertState(), 0
    for i, f in enumerate(flags):
        st, tr = step(rule, st, bool(f), i, float(i), float(i + 1), float(i + 1))
        fired += tr is not None and tr.to == "firing"
    return fired
