"""Observers: turn a closed window's report or a scored performance window into one
observation per (rule, instance), ready for the state machine. Pure functions.

Each series brings its own observer (its registry entry's ``observe``); these functions
only look it up, skip windows too small to judge for series that are statistics of the
window's rows, and keep the instance a rule names.
"""

from __future__ import annotations

from typing import Any, Mapping

from monitoring.alerts.rules import RuleSpec
from monitoring.alerts.series import SERIES, Obs, ObserveContext, RuleContext
from monitoring.alerts.series.serving import LATENCY_HISTORY

__all__ = ["LATENCY_HISTORY", "observe", "observe_performance", "observe_window"]


def observe(rule: RuleSpec, report: Mapping[str, Any], ctx: ObserveContext) -> dict[str, Obs]:
    """The rule's series in one report of its source: {instance: observation} ("" for
    one-value series)."""
    series = SERIES[rule.series]
    if series.judged and report.get("too_small"):
        return {}
    out = series.observe(rule, report, ctx)
    if rule.label is not None:
        out = {k: v for k, v in out.items() if k == rule.label}
    return out


def observe_window(rule: RuleSpec, report: Mapping[str, Any], ctx: RuleContext,
                   data: Mapping[str, Any] | None = None) -> dict[str, Obs]:
    """The rule's series in one window report; ``data`` is what the alert engine keeps for
    the rule (the latency history)."""
    if SERIES[rule.series].source != "window":
        return {}
    return observe(rule, report, ObserveContext(model=ctx, data=data))


def observe_performance(rule: RuleSpec, result: Mapping[str, Any], baseline=None) -> dict[str, Obs]:
    """The rule's series in one scored performance window (see ``window_performance``)."""
    if SERIES[rule.series].source != "performance":
        return {}
    return observe(rule, result, ObserveContext(baseline=baseline))
