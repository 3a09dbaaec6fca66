"""Publishing series as gauges: a closed window or a scored performance window sets the
gauge of every registered series of that source (its registry entry's ``gauge``), plus the
few gauges and counters that belong to no series (window rows, drift flags, the realized
metric's band edges, label delay).

A gauge holds the last published window's value until the next one sets it; a value a
window does not have (no predictions, a metric not computed, a variance of one value) is
left out, so the gauge keeps its previous value. Called by whoever evaluates the window
(:class:`~monitoring.runtime.monitor.ModelMonitor`); exceptions propagate to it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

from monitoring import names as N
from monitoring.alerts.series import SERIES
from monitoring.metrics import Metrics


def publish_report(metrics: Metrics, report) -> None:
    """Export a closed window's :class:`~monitoring.stats.evaluate.WindowReport`."""
    metrics[N.M_WINDOWS_CLOSED].add(1)
    metrics[N.M_WINDOW_ROWS].set(report.rows)
    if not report.too_small:
        for f in report.features:  # the verdict behind drift.score, for dashboards
            metrics[N.M_DRIFT_FLAG].set(1.0 if f.flagged else 0.0, **{N.L_FEATURE: f.feature})
    # the dataclass as it is (not to_dict(), which turns non-finite values into None)
    _publish(metrics, "window", asdict(report))


def publish_performance(metrics: Metrics, result: Mapping[str, Any]) -> None:
    """Export one scored window (see :func:`monitoring.stats.performance.window_performance`)."""
    _publish(metrics, "performance", result)
    if result.get("label_delay_seconds"):
        metrics[N.M_LABEL_DELAY].set(result["label_delay_seconds"]["p50"])
    if result.get("status") == "insufficient labels":
        return
    for k, (lo, hi) in (result.get("band") or {}).items():  # performance.realized's band, for its PromQL form
        if lo is not None and hi is not None:
            metrics[N.M_PERF_BAND_LOWER].set(lo, **{N.L_METRIC: k})
            metrics[N.M_PERF_BAND_UPPER].set(hi, **{N.L_METRIC: k})


def _publish(metrics: Metrics, source: str, report: Mapping[str, Any]) -> None:
    for series in SERIES.values():
        g = series.gauge
        if series.source != source or g is None or g.read is None:
            continue
        if series.judged and report.get("too_small"):
            continue
        gauge = metrics[g.metric]
        for instance, value in g.read(report).items():
            if value is not None:
                gauge.set(value, **({g.label: instance} if g.label else {}))
