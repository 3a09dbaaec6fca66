"""Observers: turn a closed window's report or a scored performance window into one
observation per (rule, instance), ready for the state machine. Pure functions."""

from __future__ import annotations

from typing import Any, Mapping

from monitoring.alerts.rules import Obs, RuleSpec
from monitoring.alerts.defaults import RuleContext
from monitoring.stats.serving import ServingSketch, pooled, quantile

#: A latency baseline needs this many earlier windows and answered requests.
LATENCY_HISTORY = 12
LATENCY_MIN_WINDOWS = 3
LATENCY_MIN_REQUESTS = 200
#: A latency spike also needs at least this share of requests above the baseline p99.
LATENCY_SPIKE_SHARE = 0.05


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if k > 0 else 1.0


def observe_window(rule: RuleSpec, report: Mapping[str, Any], ctx: RuleContext,
                   data: Mapping[str, Any] | None = None) -> dict[str, Obs]:
    """The rule's series in one window report: {instance: observation} ("" for one-value series)."""
    s = rule.series
    rows = int(report.get("rows") or 0)
    rate = rule.band_rate if rule.band_rate is not None else ctx.drift_alpha
    small = bool(report.get("too_small"))
    out: dict[str, Obs] = {}
    if s.startswith("serving.") or s.startswith("system."):
        sv = report.get("serving") or {}
        n = int(sv.get("requests") or 0)
        if s == "serving.error_rate":
            if n:
                k = int(sv["server_errors"])
                p0 = ctx.error_rate
                bound = _upper_count(n, p0, rate)
                out[""] = Obs(k / n, p0, _binom_sf(k, n, p0) <= rate, f"at most {bound} of {n} failures", n)
        elif s.startswith("serving.latency_"):
            q = {"serving.latency_p50": 0.5, "serving.latency_p95": 0.95, "serving.latency_p99": 0.99}[s]
            hist = pooled([sv.get("latency") or {}])
            answered = sum(hist)
            if answered:
                value = quantile(hist, q)
                base_hist = pooled(h for _, h in (data or {}).get("history", []))
                windows = len((data or {}).get("history", []))
                base_total = sum(base_hist)
                ref = quantile(base_hist, q) if base_total else None
                outside, bound = None, None
                if windows >= LATENCY_MIN_WINDOWS and base_total >= LATENCY_MIN_REQUESTS:
                    p99 = quantile(base_hist, 0.99)
                    slow = ServingSketch(latency=hist).count_above(p99)
                    outside = (_binom_sf(slow, answered, 0.01) <= rate and slow >= LATENCY_SPIKE_SHARE * answered)
                    bound = f"{slow} of {answered} requests slower than the recent p99 {p99 * 1000:.3g} ms"
                out[""] = Obs(value, ref, outside, bound, answered)
        elif s == "system.cpu" and sv.get("cpu_cores") is not None:
            out[""] = Obs(float(sv["cpu_cores"]), n=n)
        elif s == "system.memory" and sv.get("memory_bytes") is not None:
            out[""] = Obs(float(sv["memory_bytes"]), n=n)
        return out
    if small:
        return out
    if s == "drift.score":
        for f in report.get("features", []):
            out[f["feature"]] = Obs(f["score"], None, bool(f["flagged"]), "score >= 1", rows)
    elif s == "drift.share":
        out[""] = Obs(report.get("share_drifted"), n=rows)
    elif s == "drift.multivariate":
        mv = report.get("multivariate")
        if mv is not None:
            out[""] = Obs(mv["score"], None, bool(mv["flagged"]), "score >= 1", rows)
    elif s.startswith("quality."):
        key = s.split(".", 1)[1]
        floor = 1.0 / (ctx.reference_rows + 1)
        for qd in report.get("quality", []):
            v = qd.get(key)
            if v is None:
                continue
            p0 = max(qd["reference_missing_rate"], floor) if key == "missing_rate" else floor
            ref = qd["reference_missing_rate"] if key == "missing_rate" else 0.0
            k = int(round(v * rows))
            out[qd["feature"]] = Obs(v, ref, _binom_sf(k, rows, p0) <= rate,
                                     f"at most {_upper_count(rows, p0, rate)} of {rows}", rows)
    elif s.startswith("prediction."):
        p = report.get("predictions")
        if p is None:
            return out
        if s == "prediction.drift":
            out[""] = Obs(p["p_value"], None, bool(p["flagged"]), f"p <= {ctx.drift_alpha:g}", rows)
        elif s == "prediction.class_share" and p.get("class_share"):
            from scipy.stats import binomtest

            for cls, share in p["class_share"].items():
                ref = (p.get("reference_class_share") or {}).get(cls)
                if ref is None:
                    continue
                k = int(round(share * rows))
                pv = binomtest(k, rows, min(max(ref, 1.0 / (ctx.reference_rows + 1)), 1.0)).pvalue if rows else 1.0
                out[cls] = Obs(share, ref, pv <= rate, f"two-sided binomial p <= {rate:.3g}", rows)
        elif s == "prediction.confidence" and p.get("mean_confidence") is not None:
            out[""] = Obs(p["mean_confidence"], p.get("reference_mean_confidence"), n=rows)
        elif s == "prediction.mean" and p.get("mean") is not None:
            out[""] = Obs(p["mean"], p.get("reference_mean"), n=rows)
        elif s == "prediction.variance" and p.get("variance") is not None:
            out[""] = Obs(p["variance"], p.get("reference_variance"), n=rows)
    if rule.label is not None:
        out = {k: v for k, v in out.items() if k == rule.label}
    return out


def _upper_count(n: int, p0: float, rate: float) -> int:
    """The largest count a binomial(n, p0) check at ``rate`` still calls normal."""
    from scipy.stats import binom

    return int(binom.isf(rate, n, p0)) if n else 0


def observe_performance(rule: RuleSpec, result: Mapping[str, Any], baseline=None) -> dict[str, Obs]:
    """The rule's series in one scored performance window (see ``window_performance``)."""
    from monitoring.stats.performance import HIGHER_IS_BETTER

    s = rule.series
    final = bool(result.get("final"))
    n_lab = int(result.get("labelled") or 0)
    if s == "label.coverage":
        return {"": Obs(result.get("coverage"), None, None, None, int(result.get("predictions") or 0))} if final else {}
    m = rule.label
    if s == "performance.realized":
        if not final or result.get("status") not in ("ok", "in-sample baseline") or not result.get("realized"):
            return {}
        v = result["realized"].get(m)
        if v is None:
            return {}
        ref = (result.get("baseline") or {}).get(m)
        outside = None
        band = (result.get("band") or {}).get(m)
        if result.get("alerting") and result.get("band_status") and m in result["band_status"]:
            outside = m in (result.get("degraded") or [])
        bound = None if band is None else f"band [{band[0]:.4g}, {band[1]:.4g}] at {n_lab} labels"
        return {m: Obs(v, ref, outside, bound, n_lab)}
    if s == "performance.estimated":
        est = (result.get("estimated") or {}).get(m)
        if not est or est.get("value") is None:
            return {}
        v = est["value"]
        n = int(result.get("predictions") or 0)
        ref, outside, bound = None, None, None
        if baseline is not None and m in baseline.values:
            ref = baseline.values[m]
            if not baseline.in_sample:
                lo, hi = baseline.band(n).get(m, (None, None))
                if lo is not None:
                    outside = v < lo if HIGHER_IS_BETTER[m] else v > hi
                    bound = f"band [{lo:.4g}, {hi:.4g}] at {n} predictions"
        return {m: Obs(v, ref, outside, bound, n)}
    return {}


