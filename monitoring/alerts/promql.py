"""Prometheus alerting rules equivalent to Vigil's active alert rules, over the series
Vigil exports on ``/metrics``.

Each series' registry entry carries its PromQL form (:class:`~monitoring.alerts.promexpr.PromQL`:
the metric it reads, its value per instance, its band, its reference values); this module
applies a rule's condition to that form and writes the rules file. Per-window checks become expressions over the per-window gauges (a gauge holds the last
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

from typing import Any, Mapping

import yaml

from monitoring import names as N
from monitoring.alerts.defaults import DerivedRule
from monitoring.alerts.promexpr import Exprs, PromEnv, duration, number
from monitoring.alerts.rules import RuleSpec
from monitoring.alerts.series import SERIES


def expressions(rule: RuleSpec, *, window_seconds: float, drift_alpha: float, error_rate: float,
                references: Mapping[str, Mapping[str, float]] | None = None,
                higher_is_better: Mapping[str, bool] | None = None) -> Exprs | str:
    """[(instance, PromQL)] for one rule, or a string saying why it has no PromQL form.
    ``higher_is_better`` defaults to the performance-metric catalogue."""
    series = SERIES[rule.series]
    form = series.promql
    if form is None:
        return series.no_promql_reason
    env = PromEnv(window_seconds, drift_alpha, error_rate, (references or {}).get(rule.series, {}),
                  N.HIGHER_IS_BETTER if higher_is_better is None else higher_is_better)
    if rule.outside_band:
        return form.band(rule, env) if form.band is not None else form.no_band_reason
    if rule.relative_change is not None and form.no_relative_reason is not None:
        return form.no_relative_reason
    if form.label is None:
        return _compare(rule, [(None, form.value(None, env), form.reference(env))])
    refs = env.references
    instances = [rule.label] if rule.label is not None else sorted(refs) if rule.relative_change is not None \
        else [None]
    return _compare(rule, [(inst, form.value(inst, env), refs.get(inst) if inst is not None else None)
                           for inst in instances])


def _compare(rule: RuleSpec, items: list[tuple[str | None, str, float | None]]) -> Exprs | str:
    out = []
    for inst, expr, ref in items:
        if rule.above is not None:
            out.append((inst, f"{expr} > {number(rule.above)}"))
        elif rule.below is not None:
            out.append((inst, f"{expr} < {number(rule.below)}"))
        elif rule.relative_change is not None:
            if ref is None:
                return f"no reference value for {rule.series}" + (f" [{inst}]" if inst else "")
            r = rule.relative_change
            if ref == 0:
                cond = {"up": f"{expr} > 0", "down": f"{expr} < 0", "both": f"{expr} != 0"}[rule.direction]
            else:
                delta = f"({expr} - {number(ref)})"
                lim = number(r * abs(ref))
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
                "for": duration(hold),
                "labels": {"severity": r.severity, "vigil_rule": r.name, "vigil_model": model,
                           **({"vigil_instance": inst} if inst else {})},
                "annotations": {
                    "summary": f"{model}: {r.condition_text()}" + (f" [{inst}]" if inst else ""),
                    "description": r.description or SERIES[r.series].description,
                    "vigil_derivation": d.derivation,
                },
            }
            if r.resolve_windows > 1:
                entry["keep_firing_for"] = duration((r.resolve_windows - 1) * window_seconds)
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
    """Reference values per series and instance, for ``relative_change`` rules (each
    series' PromQL form says where its values come from)."""
    return {name: s.promql.references(profile, schema, baseline) for name, s in SERIES.items()
            if s.promql is not None and s.promql.references is not None}


def _slug(v: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(v))
