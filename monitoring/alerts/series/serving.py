"""Serving and system series: the share of ``/predict`` requests that failed on the server,
latency quantiles, and the CPU and memory of the serving processes, judged per window from
the window's merged :class:`~monitoring.stats.serving.ServingSketch` like every other series.

The error-rate band is a binomial test of the failures against ``alert_error_rate``; the
latency band is a spike test: more of the window's requests slower than the recent p99
(pooled over the last ``LATENCY_HISTORY`` normal windows the alert engine keeps) than chance
allows, and at least ``LATENCY_SPIKE_SHARE`` of them. Neither is published as a gauge:
Prometheus computes both from the request counter and latency histogram, which is what
their PromQL forms read.
"""

from __future__ import annotations

from typing import Any, Mapping

from monitoring import names as N
from monitoring.alerts.promexpr import PromEnv, PromQL, duration, gauge_form, number, selector
from monitoring.alerts.series.registry import (Gauge, Obs, ObserveContext, Series, band_rate, binom_sf,
                                               register_series, upper_count)
from monitoring.stats.serving import ServingSketch, pooled, quantile

#: A latency baseline needs this many earlier windows and answered requests.
LATENCY_HISTORY = 12
LATENCY_MIN_WINDOWS = 3
LATENCY_MIN_REQUESTS = 200
#: A latency spike also needs at least this share of requests above the baseline p99.
LATENCY_SPIKE_SHARE = 0.05

_NOT_A_GAUGE = "Prometheus computes it per window from the {} {}, which every worker feeds"


def _serving(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return report.get("serving") or {}


def _requests(report: Mapping[str, Any]) -> int:
    return int(_serving(report).get("requests") or 0)


# -- error rate --------------------------------------------------------------------------

def _observe_error_rate(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    sv, n = _serving(report), _requests(report)
    if not n:
        return {}
    k = int(sv["server_errors"])
    p0, rate = ctx.model.error_rate, band_rate(rule, ctx.model)
    bound = upper_count(n, p0, rate)
    return {"": Obs(k / n, p0, binom_sf(k, n, p0) <= rate, f"at most {bound} of {n} failures", n)}


def _increase(env: PromEnv, **labels: str) -> str:
    sel = selector(N.M_REQUESTS + ".total", **{N.L_ENDPOINT: "predict"}, **labels)
    return f"sum(increase({sel}[{duration(env.window_seconds)}]))"


def _error_rate_band(rule, env: PromEnv):
    """Normal approximation of the binomial test: ``errors > n p0 + z sqrt(n p0 (1 - p0))``."""
    from scipy.stats import norm  # here: scipy.stats would slow ``import monitoring.config``

    total, errors = _increase(env), _increase(env, **{N.L_OUTCOME: N.OUTCOME_SERVER_ERROR})
    z = float(norm.isf(rule.band_rate or env.drift_alpha))
    p0 = env.error_rate
    return [(None, f"{errors} > ({total} * {number(p0)} + {number(z)} * sqrt({total} * {number(p0 * (1 - p0))}))")]


ERROR_RATE_PROMQL = PromQL(
    N.M_REQUESTS,
    lambda inst, env: f"({_increase(env, **{N.L_OUTCOME: N.OUTCOME_SERVER_ERROR})} / {_increase(env)})",
    band=_error_rate_band, reference=lambda env: env.error_rate)


# -- latency -----------------------------------------------------------------------------

def _observe_latency(q: float):
    def observe(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
        hist = pooled([_serving(report).get("latency") or {}])
        answered = sum(hist)
        if not answered:
            return {}
        history = (ctx.data or {}).get("history", [])
        base_hist = pooled(h for _, h in history)
        base_total = sum(base_hist)
        ref = quantile(base_hist, q) if base_total else None
        outside, bound = None, None
        if len(history) >= LATENCY_MIN_WINDOWS and base_total >= LATENCY_MIN_REQUESTS:
            p99 = quantile(base_hist, 0.99)
            slow = ServingSketch(latency=hist).count_above(p99)
            rate = band_rate(rule, ctx.model)
            outside = binom_sf(slow, answered, 0.01) <= rate and slow >= LATENCY_SPIKE_SHARE * answered
            bound = f"{slow} of {answered} requests slower than the recent p99 {p99 * 1000:.3g} ms"
        return {"": Obs(quantile(hist, q), ref, outside, bound, answered)}
    return observe


def _latency_now(q: float, env: PromEnv) -> str:
    buckets = selector(N.M_REQUEST_DURATION + ".bucket", **{N.L_ENDPOINT: "predict"})
    return f"histogram_quantile({q}, sum by (le) (rate({buckets}[{duration(env.window_seconds)}])))"


def _latency_band(q: float):
    """The window's quantile against twice the p99 of the previous ``LATENCY_HISTORY`` windows."""
    def band(rule, env: PromEnv):
        buckets = selector(N.M_REQUEST_DURATION + ".bucket", **{N.L_ENDPOINT: "predict"})
        hist, w = duration(LATENCY_HISTORY * env.window_seconds), duration(env.window_seconds)
        base = f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{hist}] offset {w})))"
        return [(None, f"{_latency_now(q, env)} > 2 * {base}")]
    return band


def _latency(name: str, q: float, description: str, band: str, opt_in: str | None) -> Series:
    return Series(
        name, "window", None, description, _observe_latency(q), band=band, reference=True, tunable_rate=True,
        no_gauge_reason=_NOT_A_GAUGE.format("latency histogram", N.M_REQUEST_DURATION),
        promql=PromQL(N.M_REQUEST_DURATION, lambda inst, env: _latency_now(q, env), band=_latency_band(q),
                      no_relative_reason="relative_change of latency needs the recent baseline; "
                                         "use outside_band or above"),
        opt_in=opt_in, keeps_history=True)


# -- system ------------------------------------------------------------------------------

def _observe_system(key: str):
    def observe(rule, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
        v = _serving(report).get(key)
        return {} if v is None else {"": Obs(float(v), n=_requests(report))}
    return observe


_SAMPLER = "the system sampler (monitoring.runtime.system): the live value, summed over workers"
CPU = Gauge(N.M_PROCESS_CPU, set_by=_SAMPLER)
MEMORY = Gauge(N.M_PROCESS_RSS, set_by=_SAMPLER)
_NO_BAND_SYSTEM = "no calibrated band: what is too much depends on the machine, so the threshold is the operator's"

register_series(Series(
    "serving.error_rate", "window", None, "share of /predict requests that failed on the server",
    _observe_error_rate, band="binomial test of the failures against alert_error_rate, at band_rate",
    reference=True, tunable_rate=True, no_gauge_reason=_NOT_A_GAUGE.format("request counter", N.M_REQUESTS),
    promql=ERROR_RATE_PROMQL))
register_series(_latency(
    "serving.latency_p50", 0.5, "median /predict latency, seconds",
    "spike: more requests slower than the recent p99 than chance allows (binomial, at band_rate) "
    "and at least 5 % of them",
    "latency_spike (a default rule) runs the same spike test on p99"))
register_series(_latency(
    "serving.latency_p95", 0.95, "95th percentile /predict latency, seconds",
    "latency spike test (see serving.latency_p50)", "latency_spike (a default rule) runs the same spike test on p99"))
register_series(_latency(
    "serving.latency_p99", 0.99, "99th percentile /predict latency, seconds",
    "latency spike test (see serving.latency_p50)", None))
register_series(Series(
    "system.cpu", "window", None, "CPU used by the serving processes, cores (mean over the window)",
    _observe_system("cpu_cores"), gauge=CPU, promql=gauge_form(CPU), opt_in=_NO_BAND_SYSTEM))
register_series(Series(
    "system.memory", "window", None, "resident memory of the serving processes, bytes (peak)",
    _observe_system("memory_bytes"), gauge=MEMORY, promql=gauge_form(MEMORY), opt_in=_NO_BAND_SYSTEM))
