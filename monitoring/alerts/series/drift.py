"""Drift series: each feature's drift score, the share of features flagged, and the
multivariate (PCA reconstruction) score. Scores are ``>= 1`` exactly when the window's
Holm-adjusted test flags them (see :mod:`monitoring.stats.evaluate`), so the band is the
flag itself and reads ``score >= 1`` in PromQL."""

from __future__ import annotations

from typing import Any, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import PromEnv, gauge_form, selector
from monitoring.alerts.series.registry import Gauge, Obs, ObserveContext, Series, register_series, rows_of


def _observe_score(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    rows = rows_of(report)
    return {f["feature"]: Obs(f["score"], None, bool(f["flagged"]), "score >= 1", rows)
            for f in report.get("features", [])}


def _observe_share(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    return {"": Obs(report.get("share_drifted"), n=rows_of(report))}


def _observe_multivariate(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    mv = report.get("multivariate")
    return {} if mv is None else {"": Obs(mv["score"], None, bool(mv["flagged"]), "score >= 1", rows_of(report))}


def _flagged(gauge: Gauge):
    def band(rule, env: PromEnv):
        return [(rule.label, f"{selector(gauge.metric, **({gauge.label: rule.label} if gauge.label else {}))} >= 1")]
    return band


SCORE = Gauge(N.M_DRIFT_SCORE, N.L_FEATURE, lambda r: {f["feature"]: f["score"] for f in r.get("features", [])})
SHARE = Gauge(N.M_DRIFT_SHARE, None, lambda r: {"": r.get("share_drifted")})
MULTIVARIATE = Gauge(N.M_DRIFT_MULTIVARIATE, None,
                     lambda r: {} if r.get("multivariate") is None else {"": r["multivariate"]["score"]})

register_series(Series(
    "drift.score", "window", "feature", "per-feature drift score (>= 1: flagged)", _observe_score,
    band="flagged: Holm-adjusted p <= drift_alpha and effect >= drift_effect_floor", judged=True,
    gauge=SCORE, promql=gauge_form(SCORE, _flagged(SCORE))))
register_series(Series(
    "drift.share", "window", None, "share of features flagged in the window", _observe_share, judged=True,
    gauge=SHARE, promql=gauge_form(SHARE),
    opt_in="a summary of drift.score, which the default feature_drift rule already watches per feature"))
register_series(Series(
    "drift.multivariate", "window", None, "multivariate (PCA reconstruction) drift score", _observe_multivariate,
    band="flagged in the same Holm family as the features", judged=True,
    gauge=MULTIVARIATE, promql=gauge_form(MULTIVARIATE, _flagged(MULTIVARIATE))))
