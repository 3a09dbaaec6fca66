"""Alert rules over the monitored series: the series registry, rule specifications and
conditions, the state machine, the default rules and their budget, the observers that
turn a window into observations, and the Prometheus rule export. No SQL, no threads.

Modules: ``series`` (what can be watched) <- ``rules`` (RuleSpec, WebhookSpec, Obs,
conditions) <- ``state`` (the transition function) and ``defaults`` (budget, default
rules, label checks) <- ``observers`` <- ``promql``.
"""

from monitoring.alerts.defaults import (Budget, DefaultContext, DerivedRule, RuleContext,
                                        active_rules, check_labels, default_rules, merge_rules)
from monitoring.alerts.rules import Obs, RuleSpec, Severity, WebhookSpec, evaluate_condition
from monitoring.alerts.series import SERIES, SeriesDef, SeriesName
from monitoring.alerts.state import AlertState, State, Transition, step
from monitoring.names import TASK_METRICS

__all__ = ["TASK_METRICS", "Budget", "DefaultContext", "DerivedRule", "RuleContext", "active_rules",
           "check_labels", "default_rules", "merge_rules", "Obs", "RuleSpec", "Severity", "WebhookSpec",
           "evaluate_condition", "SERIES", "SeriesDef", "SeriesName", "AlertState", "State", "Transition", "step"]
