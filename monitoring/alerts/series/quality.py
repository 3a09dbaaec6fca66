"""Data-quality series, per feature: the share of missing values, of values outside the
reference range, and of categories the reference never showed.

Each band is a rise that is both *significant* and *beyond the floor*: a one-sided
test of the window's count that accounts for the sampling error of the reference as well
as the window's (see :mod:`monitoring.stats.rates`: Fisher's exact test for missing
shares, an exact Beta-binomial for out-of-range values, a Good-Turing Beta-binomial for
unseen categories), at the rule's ``band_rate``, AND a rise of at least the effect floor
in Cohen's h, significantly more than half of it (:func:`~monitoring.stats.rates.beyond_floor`,
at the same rate, the reference worth its rows or its Beta prior's size; ``rule.effect_floor`` /
``effect_floors`` per feature, default ``RuleContext.rate_effect_floor``, 0.1: 10 % ->
13.2 %, 0 -> 0.25 %). Counts are
recovered from the report's rates and row counts (missing shares are of all rows,
out-of-range and unseen shares of the non-missing ones). Such a test needs the window's
counts, which Prometheus does not have, so the bands have no PromQL form; thresholds and
relative changes do.

Two default rules watch these series (``missing_share_rise`` and ``new_categories``, see
:mod:`monitoring.alerts.defaults`); out-of-range is opt-in.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import gauge_form, per_window_test
from monitoring.alerts.series.registry import (Gauge, Obs, ObserveContext, RuleContext, Series, band_rate,
                                               effect_floor, register_series, rows_of)
from monitoring.stats import rates as R

_OPT_IN = ("values outside the reference range are normal for a feature whose range keeps growing (amounts, "
           "dates); configure it for the features whose range is fixed")
_FLOOR = "Cohen's h of the window's rate against the reference's"

#: (quality entry, window rows, reference rows, model context) -> (window count, window size, the
#: rise's p-value function of (k, m), the reference rate the floor is measured from, Beta prior or
#: None for the evidence's largest normal count)
Prior = Callable[[Mapping[str, Any], int, int, RuleContext],
                 tuple[int, int, Callable[[int, int], float], float, tuple[float, float]]]


def _non_missing(rows: int, missing_rate: float | None) -> int:
    return int(round(rows * (1.0 - (missing_rate or 0.0))))


def _missing(qd, rows, ref_rows, ctx):
    r = int(round(qd["reference_missing_rate"] * ref_rows))
    return (int(round(qd["missing_rate"] * rows)), rows, lambda k, m: R.fisher_rise_pvalue(k, m, r, ref_rows),
            qd["reference_missing_rate"], R.share_prior(r, ref_rows))


def _out_of_range(qd, rows, ref_rows, ctx):
    m = _non_missing(rows, qd["missing_rate"])
    prior = R.out_of_range_prior(_non_missing(ref_rows, qd["reference_missing_rate"]))
    return (int(round(qd["out_of_range_rate"] * m)), m, lambda k, m: R.rise_pvalue(k, m, prior),
            R.prior_mean(prior), prior)


def _unseen(qd, rows, ref_rows, ctx):
    m = _non_missing(rows, qd["missing_rate"])
    once, twice, unseen = ctx.reference_singletons.get(qd["feature"], (0, 0, 0))
    prior = R.unseen_prior(once, twice, unseen, _non_missing(ref_rows, qd["reference_missing_rate"]))
    return int(round(qd["unseen_rate"] * m)), m, lambda k, m: R.rise_pvalue(k, m, prior), R.prior_mean(prior), prior


def _observer(key: str, reference: Callable[[Mapping[str, Any]], float], prior: Prior):
    """Observe ``quality[*][key]``: a rise beyond the test and the floor (module docstring)."""
    def observe(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
        rows, rate = rows_of(report), band_rate(rule, ctx.model)
        ref_rows = int(report.get("reference_rows") or ctx.model.reference_rows)
        out = {}
        for qd in report.get("quality", []):
            v = qd.get(key)
            if v is None:
                continue
            name = qd["feature"]
            k, m, pvalue, p0, beta = prior(qd, rows, ref_rows, ctx.model)
            h = effect_floor(rule, name, ctx.model.rate_effect_floor)
            p = pvalue(k, m)
            effect = R.cohens_h(k / m, p0) if m else 0.0
            abnormal = bool(p <= rate and R.beyond_floor(effect, h, m, sum(beta) + 1, rate))
            bound = (f"{k} of {m}: p = {p:.3g} (flags at <= {rate:.3g}), Cohen's h = {effect:.3f}, "
                     f"beyond the floor {h:g}: {'yes' if abnormal else 'no'}")
            out[name] = Obs(v, reference(qd), abnormal, bound, rows)
        return out
    return observe


def _gauge(metric: str, key: str) -> Gauge:
    return Gauge(metric, N.L_FEATURE, lambda r: {q["feature"]: q[key] for q in r.get("quality", [])
                                                 if q.get(key) is not None})


def _missing_references(profile, schema, baseline) -> dict[str, float]:
    out = {name: sk.missing_rate for name, sk in profile.numeric.items()}
    for name, sk in profile.categorical.items():
        total = sk.n + sk.missing
        out[name] = sk.missing / total if total else 0.0
    return out


MISSING = _gauge(N.M_QUALITY_MISSING, "missing_rate")
OUT_OF_RANGE = _gauge(N.M_QUALITY_OUT_OF_RANGE, "out_of_range_rate")
UNSEEN = _gauge(N.M_QUALITY_UNSEEN, "unseen_rate")

register_series(Series(
    "quality.missing_rate", "window", "feature", "share of missing values",
    _observer("missing_rate", lambda qd: qd["reference_missing_rate"], _missing),
    band="rise: Fisher's exact test against the reference's missing count (both samples' error), at "
         "band_rate, and at least the effect floor", reference=True, tunable_rate=True, judged=True, gauge=MISSING,
    promql=gauge_form(MISSING, no_band_reason=per_window_test("quality.missing_rate"), references=_missing_references),
    floor_units=_FLOOR))
register_series(Series(
    "quality.out_of_range_rate", "window", "feature", "share of values outside the reference range",
    _observer("out_of_range_rate", lambda qd: 0.0, _out_of_range),
    band="rise: exact Beta-binomial(m, 2, n - 1) test (about 2/(n + 1) per value outside [min, max] of n "
         "reference values), at band_rate, and at least the effect floor", reference=True, tunable_rate=True,
    judged=True, gauge=OUT_OF_RANGE,
    promql=gauge_form(OUT_OF_RANGE, no_band_reason=per_window_test("quality.out_of_range_rate")), opt_in=_OPT_IN,
    floor_units=_FLOOR))
register_series(Series(
    "quality.unseen_rate", "window", "feature", "share of categories unseen in the reference",
    _observer("unseen_rate", lambda qd: 0.0, _unseen),
    band="rise: Beta-binomial test against the reference's Good-Turing missing mass (categories seen once / "
         "n), at band_rate, and at least the effect floor", reference=True, tunable_rate=True,
    judged=True, gauge=UNSEEN,
    promql=gauge_form(UNSEEN, no_band_reason=per_window_test("quality.unseen_rate")), floor_units=_FLOOR))
