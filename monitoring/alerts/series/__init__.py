"""The monitored series: every per-window figure a rule can watch, one registry entry each.

A series is named ``<domain>.<figure>`` (``drift.score``, ``serving.error_rate``...). Its
entry (:class:`Series`, in :mod:`~monitoring.alerts.series.registry`) holds its source,
instance label, description and conditions, its observer, its gauge and its PromQL form.
The entries live with their domain, one module each: ``drift``, ``quality``,
``prediction``, ``serving`` (serving and system figures) and ``performance`` (realized and
estimated performance, label coverage); importing this package registers them all, in
that order, and fixes :data:`SeriesName`, the names a :class:`~monitoring.alerts.RuleSpec`
accepts.
"""

from typing import Literal

from monitoring.alerts.series.registry import (SERIES, Gauge, Obs, ObserveContext, Observer, RuleContext, Series,
                                               register_series)
from monitoring.alerts.series import drift, quality, prediction, serving, performance  # noqa: F401  (registers)

SeriesName = Literal[tuple(SERIES)]  # type: ignore[valid-type]

__all__ = ["SERIES", "Gauge", "Obs", "ObserveContext", "Observer", "RuleContext", "Series", "SeriesName",
           "register_series"]
