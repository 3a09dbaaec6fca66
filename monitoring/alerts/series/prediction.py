"""Prediction series: the distribution of the model's answers in a window. The p-value of
the prediction-distribution test (chi-square on the class mix, KS on regression outputs)
has a band of its own; each class's share is tested against the reference share
(binomial, at ``band_rate``); mean confidence, mean and variance take thresholds or a
relative change from the reference profile's value."""

from __future__ import annotations

import math
from typing import Any, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import PromEnv, gauge_form, number, per_window_test, selector
from monitoring.alerts.series.registry import (Gauge, Obs, ObserveContext, Series, band_rate, register_series,
                                               rows_of)


def _predictions(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return report.get("predictions") or {}


def _observe_drift(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    p = report.get("predictions")
    if p is None:
        return {}
    return {"": Obs(p["p_value"], None, bool(p["flagged"]), f"p <= {ctx.model.drift_alpha:g} and effect >= floor",
                    rows_of(report))}


def _observe_class_share(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    from scipy.stats import binomtest  # here: scipy.stats would slow ``import monitoring.config``

    p = _predictions(report)
    rows, rate = rows_of(report), band_rate(rule, ctx.model)
    out = {}
    for cls, share in (p.get("class_share") or {}).items():
        ref = (p.get("reference_class_share") or {}).get(cls)
        if ref is None:
            continue
        k = int(round(share * rows))
        pv = binomtest(k, rows, min(max(ref, 1.0 / (ctx.model.reference_rows + 1)), 1.0)).pvalue if rows else 1.0
        out[cls] = Obs(share, ref, pv <= rate, f"two-sided binomial p <= {rate:.3g}", rows)
    return out


def _moment(key: str):
    """A one-value series compared with the reference profile's ``reference_<key>``."""
    def observe(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
        p = _predictions(report)
        if p.get(key) is None:
            return {}
        return {"": Obs(p[key], p.get(f"reference_{key}"), n=rows_of(report))}
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
    band="two-sided binomial test against the reference share, at band_rate", reference=True, tunable_rate=True,
    judged=True, gauge=CLASS_SHARE,
    promql=gauge_form(CLASS_SHARE, no_band_reason=per_window_test("prediction.class_share"),
                      references=_class_references),
    opt_in="prediction_drift (a default rule) tests the whole class mix; a per-class rule is for a class "
           "that matters on its own"))
register_series(Series(
    "prediction.confidence", "window", None, "mean top-class probability", _moment("mean_confidence"),
    reference=True, judged=True, gauge=CONFIDENCE,
    promql=gauge_form(CONFIDENCE, references=_sketch_references("confidence", "mean")),
    opt_in="no calibrated band: how far confidence may fall is the model owner's threshold"))
register_series(Series(
    "prediction.drift", "window", None, "p-value of the prediction-distribution test", _observe_drift,
    band="p <= drift_alpha (chi-square on the class mix, KS on regression outputs) and effect >= "
         "drift_effect_floor (Cohen's h on the class mix, robust Wasserstein on outputs)", judged=True,
    gauge=DRIFT, promql=gauge_form(DRIFT, _drift_band)))
register_series(Series(
    "prediction.mean", "window", None, "mean prediction (regression)", _moment("mean"), reference=True,
    judged=True, gauge=MEAN, promql=gauge_form(MEAN, references=_sketch_references("values", "mean")),
    opt_in="no calibrated band; prediction_drift (a default rule) tests the whole output distribution"))
register_series(Series(
    "prediction.variance", "window", None, "prediction variance (regression)", _moment("variance"),
    reference=True, judged=True, gauge=VARIANCE,
    promql=gauge_form(VARIANCE, references=_sketch_references("values", "variance")),
    opt_in="no calibrated band; prediction_drift (a default rule) tests the whole output distribution"))
