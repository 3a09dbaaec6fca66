"""Performance series, from scored performance windows
(:func:`~monitoring.stats.performance.window_performance`): each realized metric once a
window's outcomes are final, the label-free (CBPE) estimate of each metric from the first
scoring, and label coverage. The realized metric's band is the validation baseline's
bootstrap band at the window's label count, on the worse side; Vigil exports the band's
edges as gauges, so it has a PromQL form. The estimate's band is computed per window size
and is not exported."""

from __future__ import annotations

from typing import Any, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import PromEnv, gauge_form, per_window_test, selector
from monitoring.alerts.series.registry import Gauge, Obs, ObserveContext, Series, register_series


def _labelled(result: Mapping[str, Any]) -> int:
    return int(result.get("labelled") or 0)


def _predictions(result: Mapping[str, Any]) -> int:
    return int(result.get("predictions") or 0)


def _observe_realized(rule, result: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    m = rule.label
    if not result.get("final") or result.get("status") not in ("ok", "in-sample baseline") \
            or not result.get("realized"):
        return {}
    v = result["realized"].get(m)
    if v is None:
        return {}
    ref = (result.get("baseline") or {}).get(m)
    outside = None
    band = (result.get("band") or {}).get(m)
    if result.get("alerting") and result.get("band_status") and m in result["band_status"]:
        outside = m in (result.get("degraded") or [])
    n_lab = _labelled(result)
    bound = None if band is None else f"band [{band[0]:.4g}, {band[1]:.4g}] at {n_lab} labels"
    return {m: Obs(v, ref, outside, bound, n_lab)}


def _observe_estimated(rule, result: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    m = rule.label
    est = (result.get("estimated") or {}).get(m)
    if not est or est.get("value") is None:
        return {}
    v, n = est["value"], _predictions(result)
    ref, outside, bound = None, None, None
    baseline = ctx.baseline
    if baseline is not None and m in baseline.values:
        ref = baseline.values[m]
        if not baseline.in_sample:
            lo, hi = baseline.band(n).get(m, (None, None))
            if lo is not None:
                outside = v < lo if N.HIGHER_IS_BETTER[m] else v > hi
                bound = f"band [{lo:.4g}, {hi:.4g}] at {n} predictions"
    return {m: Obs(v, ref, outside, bound, n)}


def _observe_coverage(rule, result: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    if not result.get("final"):
        return {}
    return {"": Obs(result.get("coverage"), None, None, None, _predictions(result))}


def _read_realized(result: Mapping[str, Any]) -> dict[str, float]:
    if result.get("status") == "insufficient labels":
        return {}
    return {k: v for k, v in (result.get("realized") or {}).items() if v is not None}


def _realized_band(rule, env: PromEnv):
    """Below the exported lower edge (or above the upper one, where lower is better)."""
    m = rule.label
    better = env.higher_is_better.get(m, True)
    bound = selector(N.M_PERF_BAND_LOWER if better else N.M_PERF_BAND_UPPER, **{N.L_METRIC: m})
    return [(m, f"{selector(N.M_PERF_REALIZED, **{N.L_METRIC: m})} {'<' if better else '>'} {bound}")]


def _baseline(profile, schema, baseline: Mapping[str, float]) -> dict[str, float]:
    return dict(baseline)


REALIZED = Gauge(N.M_PERF_REALIZED, N.L_METRIC, _read_realized)
ESTIMATED = Gauge(N.M_PERF_ESTIMATED, N.L_METRIC,
                  lambda r: {k: v["value"] for k, v in (r.get("estimated") or {}).items() if v.get("value") is not None})
COVERAGE = Gauge(N.M_LABEL_COVERAGE, None, lambda r: {"": r["coverage"]})

register_series(Series(
    "performance.realized", "performance", "metric", "realized metric of a window once its labels are in",
    _observe_realized, band="outside the validation baseline's bootstrap band on the worse side", reference=True,
    gauge=REALIZED, promql=gauge_form(REALIZED, _realized_band, references=_baseline)))
register_series(Series(
    "performance.estimated", "performance", "metric", "label-free (CBPE) estimate of a metric",
    _observe_estimated, band="estimate outside the validation baseline's band on the worse side", reference=True,
    gauge=ESTIMATED,
    promql=gauge_form(ESTIMATED, no_band_reason=per_window_test("performance.estimated"), references=_baseline),
    opt_in="an estimate that assumes no concept shift; performance_drop (a default rule) watches the realized "
           "metric"))
register_series(Series(
    "label.coverage", "performance", None, "share of a window's predictions with an outcome, once final",
    _observe_coverage, reference=True, gauge=COVERAGE, promql=gauge_form(COVERAGE),
    opt_in="no calibrated band: how many outcomes come back, and when, is the deployment's own business"))
