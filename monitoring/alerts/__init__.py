"""Alert rules over the monitored series: the series registry, rule specifications and
conditions, the state machine, the default rules and their budget, the observers that
turn a window into observations, the gauges a window publishes, and the Prometheus rule
export. No SQL, no threads.

Modules, each importing only those before it: ``promexpr`` (PromQL building blocks) <-
``series`` (the registry: one entry per series with its observer, gauge and PromQL form;
one module per domain) <- ``rules`` (RuleSpec, WebhookSpec, conditions) <- ``state`` (the
transition function) and ``defaults`` (budget, default rules, label checks) <-
``observers``, ``gauges`` and ``promql`` (lookups in the registry).
"""

from monitoring.alerts.defaults import (Budget, DefaultContext, DerivedRule, active_rules, check_labels, default_rules,
                                        merge_rules)
from monitoring.alerts.rules import RuleSpec, Severity, WebhookSpec, evaluate_condition
from monitoring.alerts.series import SERIES, Obs, RuleContext, Series, SeriesName, register_series
from monitoring.alerts.state import AlertState, State, Transition, step
from monitoring.names import TASK_METRICS

__all__ = ["TASK_METRICS", "Budget", "DefaultContext", "DerivedRule", "RuleContext", "active_rules",
           "check_labels", "default_rules", "merge_rules", "Obs", "RuleSpec", "Severity", "WebhookSpec",
           "evaluate_condition", "SERIES", "Series", "SeriesName", "register_series", "AlertState", "State",
           "Transition", "step"]
