"""Prometheus alerting rules equivalent to Vigil's active alert rules, over the series
Vigil exports on ``/metrics``.

Per-window checks become expressions over the per-window gauges (a gauge holds the last
closed window's value until the next one closes), so ``for_windows = N`` becomes
``for: (N - 1) x window_seconds`` and ``resolve_windows = M`` becomes
``keep_firing_for: (M - 1) x window_seconds``: exact when windows close by time, and
conservative (later) when traffic closes them sooner. Checks that need the window's own
counts are rewritten in PromQL:

- the error-rate band (binomial test at ``band_rate``) uses the normal approximation over
  the last window's request counters: ``errors > n p0 + z sqrt(n p0 (1 - p0))``;
- the latency band (spike above the recent p99) compares the window's quantile with the
  p99 of the previous 12 windows (``offset``), fired at twice that;
- the realized-performance band compares the metric with the band gauges Vigil exports.

Rules whose condition has no PromQL form (binomial bands of per-feature rates, the
estimated-performance band) are listed in the file's header and skipped.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import yaml

from monitoring import names as N
from monitoring.alerts import SERIES, DerivedRule, RuleSpec

_GAUGE = {
    "drift.score": (N.M_DRIFT_SCORE, "feature"),
    "drift.share": (N.M_DRIFT_SHARE, None),
    "drift.multivariate": (N.M_DRIFT_MULTIVARIATE, None),
    "quality.missing_rate": (N.M_QUALITY_MISSING, "feature"),
    "quality.out_of_range_rate": (N.M_QUALITY_OUT_OF_RANGE, "feature"),
    "quality.unseen_rate": (N.M_QUALITY_UNSEEN, "feature"),
    "prediction.class_share": (N.M_PREDICTION_CLASS_SHARE, "class"),
    "prediction.confidence": (N.M_PREDICTION_CONFIDENCE, None),
    "prediction.drift": (N.M_PREDICTION_DRIFT_PVALUE, None),
    "prediction.mean": (N.M_PREDICTION_MEAN, None),
    "prediction.variance": (N.M_PREDICTION_VARIANCE, None),
    "system.cpu": (N.M_PROCESS_CPU, None),
    "system.memory": (N.M_PROCESS_RSS, None),
    "performance.realized": (N.M_PERF_REALIZED, "metric"),
    "performance.estimated": (N.M_PERF_ESTIMATED, "metric"),
    "label.coverage": (N.M_LABEL_COVERAGE, None),
}


def _sel(_name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items() if v is not None)
    return f"{N.prometheus_name(_name)}{{{inner}}}" if inner else N.prometheus_name(_name)


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"')


def _dur(seconds: float) -> str:
    return f"{max(0, int(math.ceil(seconds)))}s"


def _num(v: float) -> str:
    return repr(float(v))


def expressions(rule: RuleSpec, *, window_seconds: float, drift_alpha: float, error_rate: float,
                references: Mapping[str, Mapping[str, float]] | None = None,
                higher_is_better: Mapping[str, bool] | None = None) -> list[tuple[str | None, str]] | str:
    """[(instance, PromQL)] for one rule, or a string saying why it has no PromQL form."""
    s = rule.series
    refs = (references or {}).get(s, {})
    w = _dur(window_seconds)
    if s == "serving.error_rate":
        total = f'sum(increase({_sel(N.M_REQUESTS + ".total", endpoint="predict")}[{w}]))'
        errors = f'sum(increase({_sel(N.M_REQUESTS + ".total", endpoint="predict", outcome="server_error")}[{w}]))'
        if rule.outside_band:
            from scipy.stats import norm

            z = float(norm.isf(rule.band_rate or drift_alpha))
            p0 = error_rate
            return [(None, f"{errors} > ({total} * {_num(p0)} + {_num(z)} * sqrt({total} * {_num(p0 * (1 - p0))}))")]
        ratio = f"({errors} / {total})"
        return _compare(rule, [(None, ratio, error_rate)])
    if s.startswith("serving.latency_"):
        q = {"serving.latency_p50": 0.5, "serving.latency_p95": 0.95, "serving.latency_p99": 0.99}[s]
        buckets = _sel(N.M_REQUEST_DURATION + ".bucket", endpoint="predict")
        now = f"histogram_quantile({q}, sum by (le) (rate({buckets}[{w}])))"
        if rule.outside_band:
            hist = _dur(12 * window_seconds)
            base = f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{hist}] offset {w})))"
            return [(None, f"{now} > 2 * {base}")]
        if rule.relative_change is not None:
            return "relative_change of latency needs the recent baseline; use outside_band or above"
        return _compare(rule, [(None, now, None)])
    if s not in _GAUGE:
        return f"series {s} has no exported gauge"
    metric, label = _GAUGE[s]
    if rule.outside_band:
        if s in ("drift.score", "drift.multivariate"):
            return [(rule.label, f"{_sel(metric, **({label: rule.label} if label else {}))} >= 1")]
        if s == "prediction.drift":
            return [(None, f"{_sel(metric)} <= {_num(drift_alpha)}")]
        if s == "performance.realized":
            m = rule.label
            better = (higher_is_better or {}).get(m, True)
            bound = _sel(N.M_PERF_BAND_LOWER if better else N.M_PERF_BAND_UPPER, metric=m)
            return [(m, f"{_sel(metric, metric=m)} {'<' if better else '>'} {bound}")]
        return f"the {s} band is a per-window binomial/bootstrap test with no PromQL form"
    if label is None:
        return _compare(rule, [(None, _sel(metric), refs.get(""))])
    instances = [rule.label] if rule.label is not None else sorted(refs) if rule.relative_change is not None else [None]
    out = []
    for inst in instances:
        sel = _sel(metric, **({label: inst} if inst is not None else {}))
        out.append((inst, sel, refs.get(inst) if inst is not None else None))
    return _compare(rule, out)


def _compare(rule: RuleSpec, items: list[tuple[str | None, str, float | None]]) -> list[tuple[str | None, str]] | str:
    out = []
    for inst, expr, ref in items:
        if rule.above is not None:
            out.append((inst, f"{expr} > {_num(rule.above)}"))
        elif rule.below is not None:
            out.append((inst, f"{expr} < {_num(rule.below)}"))
        elif rule.relative_change is not None:
            if ref is None:
                return f"no reference value for {rule.series}" + (f" [{inst}]" if inst else "")
            r = rule.relative_change
            if ref == 0:
                cond = {"up": f"{expr} > 0", "down": f"{expr} < 0", "both": f"{expr} != 0"}[rule.direction]
            else:
                delta = f"({expr} - {_num(ref)})"
                lim = _num(r * abs(ref))
                cond = {"up": f"{delta} > {lim}", "down": f"{delta} < -{lim}",
                        "both": f"abs{delta} > {lim}"}[rule.direction]
            out.append((inst, cond))
    return out


def render(rules: list[DerivedRule], *, model: str, window_seconds: float, drift_alpha: float, error_rate: float,
           references: Mapping[str, Mapping[str, float]] | None = None,
           higher_is_better: Mapping[str, bool] | None = None) -> str:
    """The rules file (YAML text, with a header comment)."""
    alerts: list[dict[str, Any]] = []
    skipped: list[str] = []
    for d in rules:
        r = d.rule
        exprs = expressions(r, window_seconds=window_seconds, drift_alpha=drift_alpha, error_rate=error_rate,
                            references=references, higher_is_better=higher_is_better)
        if isinstance(exprs, str):
            skipped.append(f"{r.name}: {exprs}")
            continue
        hold = max((r.for_windows - 1) * window_seconds, r.for_seconds)
        for inst, expr in exprs:
            entry: dict[str, Any] = {
                "alert": f"vigil_{r.name}" + (f"_{_slug(inst)}" if inst and len(exprs) > 1 else ""),
                "expr": expr,
                "for": _dur(hold),
                "labels": {"severity": r.severity, "vigil_rule": r.name, "vigil_model": model,
                           **({"vigil_instance": inst} if inst else {})},
                "annotations": {
                    "summary": f"{model}: {r.condition_text()}" + (f" [{inst}]" if inst else ""),
                    "description": r.description or SERIES[r.series].description,
                    "vigil_derivation": d.derivation,
                },
            }
            if r.resolve_windows > 1:
                entry["keep_firing_for"] = _dur((r.resolve_windows - 1) * window_seconds)
            alerts.append(entry)
    header = [f"# Prometheus alerting rules for {model}, generated by `vigil alerts export-prometheus`.",
              f"# window_seconds={window_seconds:g}: for = (for_windows - 1) x window, "
              "keep_firing_for = (resolve_windows - 1) x window."]
    if skipped:
        header.append("# Not exported (no PromQL form; Vigil still evaluates them):")
        header += [f"#   - {s}" for s in skipped]
    body = yaml.safe_dump({"groups": [{"name": f"vigil-{_slug(model)}", "rules": alerts}]}, sort_keys=False,
                          width=200)
    return "\n".join(header) + "\n" + body


def references_from(profile, schema, baseline: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Reference values per series and instance, for ``relative_change`` rules."""
    refs: dict[str, dict[str, float]] = {"quality.missing_rate": {}, "prediction.class_share": {}}
    for name, sk in profile.numeric.items():
        refs["quality.missing_rate"][name] = sk.missing_rate
    for name, sk in profile.categorical.items():
        total = sk.n + sk.missing
        refs["quality.missing_rate"][name] = sk.missing / total if total else 0.0
    p = profile.predictions
    if p.classes is not None:
        total = float(p.classes.counts.sum())
        for cls, c in zip(schema.classes, p.classes.counts):
            refs["prediction.class_share"][str(cls)] = float(c) / total if total else 0.0
    if p.confidence is not None and p.confidence.n:
        refs["prediction.confidence"] = {"": p.confidence.mean}
    if p.values is not None and p.values.n:
        refs["prediction.mean"] = {"": p.values.mean}
        refs["prediction.variance"] = {"": p.values.variance}
    refs["performance.realized"] = dict(baseline)
    refs["performance.estimated"] = dict(baseline)
    return refs


def _slug(v: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(v))
