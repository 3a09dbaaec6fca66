"""Data-quality series, per feature: the share of missing values, of values outside the
reference range, and of categories the reference never showed. Each band is a binomial
test of the window's count against the reference rate (floored at ``1 / (reference rows
+ 1)``, so that a rate the reference never showed is not treated as impossible), at the
rule's ``band_rate``. Such a test needs the window's counts, which Prometheus does not
have, so the bands have no PromQL form; thresholds and relative changes do."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import gauge_form, per_window_test
from monitoring.alerts.series.registry import (Gauge, Obs, ObserveContext, Series, band_rate, binom_sf,
                                               register_series, rows_of, upper_count)

_OPT_IN = ("per-feature rates: a default rule would split the false-alert budget over every feature, "
           "so it is configured for the features that matter")


def _observer(key: str, reference: Callable[[Mapping[str, Any]], float]):
    """Observe ``quality[*][key]``: binomial test of its count against ``reference(entry)``."""
    def observe(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
        rows, rate = rows_of(report), band_rate(rule, ctx.model)
        floor = 1.0 / (ctx.model.reference_rows + 1)
        out = {}
        for qd in report.get("quality", []):
            v = qd.get(key)
            if v is None:
                continue
            ref = reference(qd)
            p0 = max(ref, floor)
            k = int(round(v * rows))
            out[qd["feature"]] = Obs(v, ref, binom_sf(k, rows, p0) <= rate,
                                     f"at most {upper_count(rows, p0, rate)} of {rows}", rows)
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
    _observer("missing_rate", lambda qd: qd["reference_missing_rate"]),
    band="binomial test of the missing count against the reference rate, at band_rate", reference=True,
    tunable_rate=True, judged=True, gauge=MISSING,
    promql=gauge_form(MISSING, no_band_reason=per_window_test("quality.missing_rate"), references=_missing_references),
    opt_in=_OPT_IN))
register_series(Series(
    "quality.out_of_range_rate", "window", "feature", "share of values outside the reference range",
    _observer("out_of_range_rate", lambda qd: 0.0),
    band="binomial test against 1/(reference rows + 1), at band_rate", reference=True, tunable_rate=True,
    judged=True, gauge=OUT_OF_RANGE,
    promql=gauge_form(OUT_OF_RANGE, no_band_reason=per_window_test("quality.out_of_range_rate")), opt_in=_OPT_IN))
register_series(Series(
    "quality.unseen_rate", "window", "feature", "share of categories unseen in the reference",
    _observer("unseen_rate", lambda qd: 0.0),
    band="binomial test against 1/(reference rows + 1), at band_rate", reference=True, tunable_rate=True,
    judged=True, gauge=UNSEEN,
    promql=gauge_form(UNSEEN, no_band_reason=per_window_test("quality.unseen_rate")), opt_in=_OPT_IN))
