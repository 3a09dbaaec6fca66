"""Prediction series: the distribution of the model's answers in a window. The p-value of
the prediction-distribution test (chi-square on the class mix, KS on regression outputs)
has a band of its own; each class's share is tested against the reference share
(Fisher's exact test, at ``band_rate``, with an effect floor in Cohen's h). Mean
confidence, mean and variance take thresholds, a relative change from the reference
profile's value, or a band: a two-sided test counting both samples' error, at
``band_rate``, and an effect floor (0.02 of confidence, 0.1 reference sd of the mean, 10 %
of the sd)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import PromEnv, gauge_form, number, per_window_test, selector
from monitoring.alerts.series.registry import (Gauge, Obs, ObserveContext, Series, band_rate, effect_floor,
                                               register_series, rows_of)
from monitoring.stats import rates as R


def _predictions(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return report.get("predictions") or {}


def _observe_drift(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    p = report.get("predictions")
    if p is None:
        return {}
    return {"": Obs(p["p_value"], None, bool(p["flagged"]), f"p <= {ctx.model.drift_alpha:g} and effect >= floor",
                    rows_of(report))}


def _observe_class_share(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    """Two-sided Fisher exact test of the class's count against the reference's (both
    samples' error) at ``band_rate``, and a move beyond the effect floor in Cohen's h (a rare class going from 1 % to 3 % is h = 0.15; a balanced one from 50 % to
    52 % is 0.04); beyond the floor means at least it and significantly more than half of it
    (:func:`~monitoring.stats.rates.beyond_floor`)."""
    p = _predictions(report)
    rows, rate = rows_of(report), band_rate(rule, ctx.model)
    ref_rows = int(report.get("reference_rows") or ctx.model.reference_rows)
    out = {}
    for cls, share in (p.get("class_share") or {}).items():
        ref = (p.get("reference_class_share") or {}).get(cls)
        if ref is None:
            continue
        k = int(round(share * rows))
        pv = R.fisher_two_sided(k, rows, int(round(ref * ref_rows)), ref_rows)
        h = effect_floor(rule, cls, ctx.model.rate_effect_floor)
        moved = R.beyond_floor(abs(R.cohens_h(share, ref)), h, rows, ref_rows, rate / 2)
        out[cls] = Obs(share, ref, bool(rows and pv <= rate and moved),
                       f"two-sided Fisher p <= {rate:.3g} and |Cohen's h| beyond the floor {h:g}", rows)
    return out


#: Default effect floors of the moment bands: the mean in reference sds (as numeric drift),
#: the sd as a relative change, mean confidence in probability points.
MEAN_FLOOR_SD = 0.1
SD_FLOOR_RELATIVE = 0.1
CONFIDENCE_FLOOR = 0.02


def _moment_test(key: str, p: Mapping[str, Any], m: int, n: int) -> tuple[float, float, str] | None:
    """(two-sided p-value, effect in the floor's units, units) of the window's ``key``
    against the reference's, both samples' error counted; None where it cannot be judged."""
    from scipy.stats import norm  # here: scipy.stats would slow ``import monitoring.config``

    v, ref = p.get(key), p.get(f"reference_{key}")
    if v is None or ref is None or m < 2 or n < 2:
        return None
    if key == "mean_confidence":   # a mean of values in [0, 1]: variance <= c (1 - c) (Bhatia-Davis)
        se = math.sqrt(v * (1 - v) / m + ref * (1 - ref) / n)
        effect, units = abs(v - ref), "points of probability"
    elif key == "mean":
        vw, vr = p.get("variance"), p.get("reference_variance")
        if vw is None or vr is None or not vr > 0 or math.isnan(vw):
            return None
        se = math.sqrt(vw / m + vr / n)
        effect, units = abs(v - ref) / math.sqrt(vr), "reference sds"
    else:                          # variance: log ratio, se from the normal-theory sampling variance
        if not (ref > 0 and v > 0) or math.isnan(v):
            return None
        se = math.sqrt(2 / (m - 1) + 2 / (n - 1))
        effect, units = abs(math.sqrt(v / ref) - 1), "relative change of the sd"
        v, ref = math.log(v), math.log(ref)
    z = abs(v - ref) / se if se > 0 else math.inf
    return float(2 * norm.sf(z)), effect, units


_MOMENT_FLOORS = {"mean": MEAN_FLOOR_SD, "variance": SD_FLOOR_RELATIVE, "mean_confidence": CONFIDENCE_FLOOR}


def _moment(key: str):
    """A one-value series compared with the reference profile's ``reference_<key>``; its
    band: a two-sided test counting both samples' error at ``band_rate``, and a change of
    at least the effect floor (``_MOMENT_FLOORS``, or the rule's ``effect_floor``)."""
    def observe(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
        p = _predictions(report)
        if p.get(key) is None:
            return {}
        rows = rows_of(report)
        outside, bound = None, None
        if rule.outside_band:
            judged = _moment_test(key, p, rows, int(report.get("reference_rows") or ctx.model.reference_rows))
            if judged is not None:
                pv, effect, units = judged
                floor = effect_floor(rule, "", _MOMENT_FLOORS[key])
                rate = band_rate(rule, ctx.model)
                outside = bool(pv <= rate and effect >= floor)
                bound = f"p = {pv:.3g} (flags at <= {rate:.3g}), change {effect:.3g} {units} (floor {floor:g})"
        return {"": Obs(p[key], p.get(f"reference_{key}"), outside, bound, rows)}
    return observe


def _read(key: str):
    def read(report: Mapping[str, Any]) -> dict[str, float]:
        v = _predictions(report).get(key)
        return {} if v is None else {"": v}
    return read


def _read_variance(report: Mapping[str, Any]) -> dict[str, float]:
    v = _predictions(report).get("variance")
    return {} if v is None or math.isnan(v) else {"": v}  # NaN: fewer than two predictions


def _drift_band(rule, env: PromEnv):
    return [(None, f"{selector(N.M_PREDICTION_DRIFT_PVALUE)} <= {number(env.drift_alpha)}")]


def _class_references(profile, schema, baseline) -> dict[str, float]:
    p = profile.predictions
    if p.classes is None:
        return {}
    total = float(p.classes.counts.sum())
    return {str(cls): float(c) / total if total else 0.0 for cls, c in zip(schema.classes, p.classes.counts)}


def _sketch_references(sketch: str, moment: str):
    def references(profile, schema, baseline) -> dict[str, float]:
        sk = getattr(profile.predictions, sketch)
        return {"": getattr(sk, moment)} if sk is not None and sk.n else {}
    return references


DRIFT = Gauge(N.M_PREDICTION_DRIFT_PVALUE, None, _read("p_value"))
CLASS_SHARE = Gauge(N.M_PREDICTION_CLASS_SHARE, N.L_CLASS, lambda r: dict(_predictions(r).get("class_share") or {}))
CONFIDENCE = Gauge(N.M_PREDICTION_CONFIDENCE, None, _read("mean_confidence"))
MEAN = Gauge(N.M_PREDICTION_MEAN, None, _read("mean"))
VARIANCE = Gauge(N.M_PREDICTION_VARIANCE, None, _read_variance)

register_series(Series(
    "prediction.class_share", "window", "class", "share of each predicted class", _observe_class_share,
    band="two-sided Fisher exact test against the reference's count (both samples' error), at band_rate, and a "
         "move of at least the effect floor", reference=True, tunable_rate=True, judged=True, gauge=CLASS_SHARE,
    floor_units="Cohen's h of the window's share against the reference's",
    promql=gauge_form(CLASS_SHARE, no_band_reason=per_window_test("prediction.class_share"),
                      references=_class_references),
    opt_in="prediction_drift (a default rule) tests the whole class mix; a per-class rule is for a class "
           "that matters on its own"))
register_series(Series(
    "prediction.confidence", "window", None, "mean top-class probability", _moment("mean_confidence"),
    band="two-sided z-test against the reference's mean confidence (both samples' error, variance bounded by "
         "c(1 - c)), at band_rate, and a change of at least 0.02", reference=True, tunable_rate=True,
    judged=True, gauge=CONFIDENCE, floor_units="points of probability",
    promql=gauge_form(CONFIDENCE, no_band_reason=per_window_test("prediction.confidence"),
                      references=_sketch_references("confidence", "mean")),
    opt_in="prediction_drift (a default rule) tests the class mix; how far confidence may fall is the model "
           "owner's call"))
register_series(Series(
    "prediction.drift", "window", None, "p-value of the prediction-distribution test", _observe_drift,
    band="p <= drift_alpha (chi-square on the class mix, KS on regression outputs) and effect >= "
         "drift_effect_floor (Cohen's h on the class mix, robust Wasserstein on outputs)", judged=True,
    gauge=DRIFT, promql=gauge_form(DRIFT, _drift_band)))
register_series(Series(
    "prediction.mean", "window", None, "mean prediction (regression)", _moment("mean"), reference=True,
    band="two-sided Welch z-test against the reference mean (both samples' error), at band_rate, and a move "
         "of at least 0.1 reference sd", tunable_rate=True, judged=True, gauge=MEAN,
    floor_units="reference standard deviations",
    promql=gauge_form(MEAN, no_band_reason=per_window_test("prediction.mean"),
                      references=_sketch_references("values", "mean")),
    opt_in="prediction_drift (a default rule) tests the whole output distribution"))
register_series(Series(
    "prediction.variance", "window", None, "prediction variance (regression)", _moment("variance"),
    band="two-sided test of the log variance ratio (normal-theory error of both samples: liberal for "
         "heavy-tailed outputs), at band_rate, and an sd change of at least 10 %", reference=True,
    tunable_rate=True, judged=True, gauge=VARIANCE, floor_units="relative change of the sd",
    promql=gauge_form(VARIANCE, no_band_reason=per_window_test("prediction.variance"),
                      references=_sketch_references("values", "variance")),
    opt_in="prediction_drift (a default rule) tests the whole output distribution"))
