"""The monitored series: every per-window figure a rule can watch, defined once.

A series is named ``<domain>.<figure>`` (``drift.score``, ``serving.error_rate``...); its
definition says whether it comes from closed monitoring windows or scored performance
windows, what its instance label names (a feature, a class, a metric, or nothing), and
which conditions apply to it (a calibrated ``outside_band`` check, a reference value for
``relative_change``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SeriesDef:
    name: str
    source: Literal["window", "performance"]
    #: what the instance label names (None: one value per window)
    label: Literal["feature", "class", "metric"] | None
    description: str
    #: the calibrated check ``outside_band`` uses (None: the series has none)
    band: str | None = None
    #: whether ``relative_change`` has a reference value to compare against
    reference: bool = False
    #: whether the band's per-window false-alarm rate is the rule's ``band_rate``
    tunable_rate: bool = False


_SERIES = (
    SeriesDef("drift.score", "window", "feature", "per-feature drift score (>= 1: flagged)",
              "flagged: Holm-adjusted p <= drift_alpha and effect >= drift_effect_floor"),
    SeriesDef("drift.share", "window", None, "share of features flagged in the window"),
    SeriesDef("drift.multivariate", "window", None, "multivariate (PCA reconstruction) drift score",
              "flagged in the same Holm family as the features"),
    SeriesDef("quality.missing_rate", "window", "feature", "share of missing values",
              "binomial test of the missing count against the reference rate, at band_rate", True, True),
    SeriesDef("quality.out_of_range_rate", "window", "feature", "share of values outside the reference range",
              "binomial test against 1/(reference rows + 1), at band_rate", True, True),
    SeriesDef("quality.unseen_rate", "window", "feature", "share of categories unseen in the reference",
              "binomial test against 1/(reference rows + 1), at band_rate", True, True),
    SeriesDef("prediction.class_share", "window", "class", "share of each predicted class",
              "two-sided binomial test against the reference share, at band_rate", True, True),
    SeriesDef("prediction.confidence", "window", None, "mean top-class probability", None, True),
    SeriesDef("prediction.drift", "window", None, "p-value of the prediction-distribution test",
              "p <= drift_alpha (chi-square on the class mix, KS on regression outputs)"),
    SeriesDef("prediction.mean", "window", None, "mean prediction (regression)", None, True),
    SeriesDef("prediction.variance", "window", None, "prediction variance (regression)", None, True),
    SeriesDef("serving.error_rate", "window", None, "share of /predict requests that failed on the server",
              "binomial test of the failures against alert_error_rate, at band_rate", True, True),
    SeriesDef("serving.latency_p50", "window", None, "median /predict latency, seconds",
              "spike: more requests slower than the recent p99 than chance allows (binomial, at band_rate) "
              "and at least 5 % of them", True, True),
    SeriesDef("serving.latency_p95", "window", None, "95th percentile /predict latency, seconds",
              "latency spike test (see serving.latency_p50)", True, True),
    SeriesDef("serving.latency_p99", "window", None, "99th percentile /predict latency, seconds",
              "latency spike test (see serving.latency_p50)", True, True),
    SeriesDef("system.cpu", "window", None, "CPU used by the serving processes, cores (mean over the window)"),
    SeriesDef("system.memory", "window", None, "resident memory of the serving processes, bytes (peak)"),
    SeriesDef("performance.realized", "performance", "metric", "realized metric of a window once its labels are in",
              "outside the validation baseline's bootstrap band on the worse side", True),
    SeriesDef("performance.estimated", "performance", "metric", "label-free (CBPE) estimate of a metric",
              "estimate outside the validation baseline's band on the worse side", True),
    SeriesDef("label.coverage", "performance", None, "share of a window's predictions with an outcome, once final",
              None, True),
)
SERIES: dict[str, SeriesDef] = {s.name: s for s in _SERIES}
SeriesName = Literal[tuple(SERIES)]  # type: ignore[valid-type]

