"""PromQL building blocks, and the form a series takes in PromQL.

A series' :class:`PromQL` form says which catalogue metric Prometheus holds it in, how to
select one instance's value, how its calibrated band reads in PromQL (or why it has no
PromQL form), and where ``relative_change`` finds its reference values. The series
registry holds one form per series; :mod:`monitoring.alerts.promql` turns rules into
expressions with them. Pure string building: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from monitoring import names as N

if TYPE_CHECKING:
    from monitoring.alerts.rules import RuleSpec
    from monitoring.alerts.series.registry import Gauge

#: [(instance or None, PromQL expression)] for one rule
Exprs = list[tuple[str | None, str]]


def selector(metric: str, /, **labels: str | None) -> str:
    """``vigil_drift_score{feature="a"}`` (labels given None are left out)."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if v is not None)
    return f"{N.prometheus_name(metric)}{{{inner}}}" if inner else N.prometheus_name(metric)


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"')


def duration(seconds: float) -> str:
    """A PromQL duration in whole seconds, rounded up (never negative)."""
    return f"{max(0, int(math.ceil(seconds)))}s"


def number(v: float) -> str:
    """A float literal that reads back exactly."""
    return repr(float(v))


def per_window_test(series: str) -> str:
    """The reason a band has no PromQL form: it tests the window's own counts or bootstrap,
    which Prometheus does not hold."""
    return f"the {series} band is a per-window binomial/bootstrap test with no PromQL form"


@dataclass(frozen=True)
class PromEnv:
    """What an expression needs besides the rule."""

    window_seconds: float
    drift_alpha: float
    error_rate: float
    #: this series' reference values per instance ("" for one-value series)
    references: Mapping[str, float] = field(default_factory=dict)
    higher_is_better: Mapping[str, bool] = field(default_factory=lambda: N.HIGHER_IS_BETTER)


@dataclass(frozen=True)
class PromQL:
    """One series in PromQL.

    ``value(instance, env)`` selects the series' value (``instance`` None: the one value, or
    every instance at once); ``band(rule, env)`` is ``outside_band`` as expressions, or None
    with ``no_band_reason`` when the band is a test PromQL cannot express;
    ``no_relative_reason`` says why ``relative_change`` has no form where it has none, else
    ``reference(env)`` gives a one-value series' reference (default: ``env.references[""]``)
    and ``references(profile, schema, baseline)`` the values a registered model's reference
    profile gives, per instance.
    """

    #: the catalogue metric the expressions read
    metric: str
    value: Callable[[str | None, PromEnv], str]
    #: the metric's label holding the series' instance (None: one value per window)
    label: str | None = None
    band: Callable[["RuleSpec", PromEnv], Exprs] | None = None
    no_band_reason: str | None = None
    reference: Callable[[PromEnv], float | None] = lambda env: env.references.get("")
    no_relative_reason: str | None = None
    references: Callable[[Any, Any, Mapping[str, float]], dict[str, float]] | None = None


def gauge_form(gauge: "Gauge", band: Callable[["RuleSpec", PromEnv], Exprs] | None = None, *,
               no_band_reason: str | None = None,
               references: Callable[[Any, Any, Mapping[str, float]], dict[str, float]] | None = None) -> PromQL:
    """The PromQL form of a series exported as a gauge: its value is the gauge itself (the
    last closed window's value until the next one closes)."""
    return PromQL(gauge.metric, lambda inst, env: selector(gauge.metric, **({gauge.label: inst} if gauge.label else {})),
                  gauge.label, band, no_band_reason, references=references)
