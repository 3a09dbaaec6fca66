"""Metric definitions, each feeding both an OpenTelemetry instrument and a
``prometheus_client`` metric.

Every metric Vigil emits is defined once in :data:`DEFINITIONS`. :class:`Metrics` creates,
per definition, an OTel instrument on the given meter (exported over OTLP when a reader
is configured) and a Prometheus metric. Under BentoML the Prometheus metrics live in its
multiprocess registry, so one ``/metrics`` scrape sums the counters of every worker.

Label values are bounded: each label accepts only the values its definition lists
(anything else is recorded as ``other``), so no user input can create new series.

Who sets what: the per-window gauges of the monitored series are published by
:mod:`monitoring.alerts.gauges`, from each series' registry entry; the rest by the runtime.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

from monitoring import names as N

Kind = Literal["counter", "histogram", "gauge"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
ENDPOINTS = ("predict", "feedback", "monitoring", "admin", "other")
OUTCOMES = (N.OUTCOME_OK, N.OUTCOME_CLIENT_ERROR, N.OUTCOME_SERVER_ERROR)
SIGNALS = ("spans", "metrics", "logs")


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: Kind
    description: str
    unit: str = "1"
    #: allowed values per label: a fixed tuple, or the name of a domain given to Metrics
    labels: Mapping[str, tuple[str, ...] | str] = field(default_factory=dict)
    buckets: tuple[float, ...] | None = None
    #: prometheus_client multiprocess mode for gauges: how workers' values combine.
    multiprocess_mode: str = "livemostrecent"

    @property
    def prometheus_name(self) -> str:
        return N.prometheus_name(self.name)


DEFINITIONS: tuple[MetricDef, ...] = (
    MetricDef(N.M_REQUESTS, "counter", "Requests handled, by endpoint and outcome.",
              labels={N.L_ENDPOINT: ENDPOINTS, N.L_OUTCOME: OUTCOMES}),
    MetricDef(N.M_REQUEST_DURATION, "histogram", "Request latency in seconds, by endpoint and outcome.", "s",
              labels={N.L_ENDPOINT: ENDPOINTS, N.L_OUTCOME: OUTCOMES}, buckets=_LATENCY_BUCKETS),
    MetricDef(N.M_REQUEST_ROWS, "histogram", "Rows per accepted request.", "{row}",
              labels={N.L_ENDPOINT: ENDPOINTS}, buckets=_ROW_BUCKETS),
    MetricDef(N.M_VALIDATION_ERRORS, "counter", "Rejected requests, by the kind of their first error.",
              labels={N.L_KIND: N.VALIDATION_ERROR_KINDS}),
    MetricDef(N.M_MODEL_ERRORS, "counter", "Model calls that raised."),
    MetricDef(N.M_PREDICTIONS, "counter", "Rows predicted.", "{row}"),
    MetricDef(N.M_MONITOR_ENQUEUED, "counter", "Rows handed to the monitor.", "{row}"),
    MetricDef(N.M_MONITOR_DROPPED, "counter", "Rows the monitor dropped because its queue was full or closed.", "{row}"),
    MetricDef(N.M_MONITOR_PROCESSED, "counter", "Rows the monitor has processed.", "{row}"),
    MetricDef(N.M_MONITOR_QUEUE_DEPTH, "gauge", "Batches waiting in the monitor queue (summed over workers).",
              "{batch}", multiprocess_mode="livesum"),
    MetricDef(N.M_MONITOR_ERRORS, "counter", "Errors caught in the background monitor."),
    MetricDef(N.M_TELEMETRY_DROPPED, "counter", "Telemetry items dropped (queue full, export failed, shut down).",
              labels={N.L_SIGNAL: SIGNALS}),
    MetricDef(N.M_PROCESS_CPU, "gauge", "CPU used by the serving processes, in cores (summed over workers).",
              "1", multiprocess_mode="livesum"),
    MetricDef(N.M_PROCESS_RSS, "gauge", "Resident memory of the serving processes (summed over workers).",
              "By", multiprocess_mode="livesum"),
    MetricDef(N.M_PROCESS_FDS, "gauge", "Open file descriptors (summed over workers).", "{fd}",
              multiprocess_mode="livesum"),
    MetricDef(N.M_PROCESS_THREADS, "gauge", "Threads (summed over workers).", "{thread}",
              multiprocess_mode="livesum"),
    MetricDef(N.M_HOST_CPU, "gauge", "Host CPU utilisation, 0..1."),
    MetricDef(N.M_HOST_MEMORY, "gauge", "Host memory utilisation, 0..1."),
    MetricDef(N.M_GPU_UTIL, "gauge", "GPU utilisation, 0..1 (NVIDIA, through NVML).",
              labels={N.L_GPU: tuple(str(i) for i in range(16))}),
    MetricDef(N.M_GPU_MEMORY_USED, "gauge", "GPU memory used.", "By", labels={N.L_GPU: tuple(str(i) for i in range(16))}),
    MetricDef(N.M_GPU_MEMORY_TOTAL, "gauge", "GPU memory total.", "By", labels={N.L_GPU: tuple(str(i) for i in range(16))}),
    MetricDef(N.M_DRIFT_SCORE, "gauge", "Drift score of the last closed window (>= 1 means flagged).",
              labels={N.L_FEATURE: N.DOMAIN_FEATURES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_DRIFT_FLAG, "gauge", "1 if the feature drifted in the last closed window.",
              labels={N.L_FEATURE: N.DOMAIN_FEATURES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_DRIFT_SHARE, "gauge", "Share of features flagged in the last closed window.",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_DRIFT_MULTIVARIATE, "gauge", "Multivariate (PCA reconstruction) drift score of the last window.",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_QUALITY_MISSING, "gauge", "Missing-value rate in the last closed window.",
              labels={N.L_FEATURE: N.DOMAIN_FEATURES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_QUALITY_OUT_OF_RANGE, "gauge", "Share of values outside the reference range in the last window.",
              labels={N.L_FEATURE: N.DOMAIN_FEATURES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_QUALITY_UNSEEN, "gauge", "Share of unseen categories in the last closed window.",
              labels={N.L_FEATURE: N.DOMAIN_FEATURES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_PREDICTION_CLASS_SHARE, "gauge", "Share of each predicted class in the last closed window.",
              labels={N.L_CLASS: N.DOMAIN_CLASSES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_PREDICTION_CONFIDENCE, "gauge", "Mean top-class probability in the last closed window.",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_PREDICTION_DRIFT_PVALUE, "gauge", "p-value of the prediction-distribution check, last window.",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_PREDICTION_MEAN, "gauge", "Mean prediction in the last closed window (regression).",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_PREDICTION_VARIANCE, "gauge", "Prediction variance in the last closed window (regression).",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_WINDOW_ROWS, "gauge", "Rows in the last closed window.", "{row}", multiprocess_mode="mostrecent"),
    MetricDef(N.M_WINDOWS_CLOSED, "counter", "Monitoring windows evaluated."),
    MetricDef(N.M_PERF_REALIZED, "gauge", "Realized performance of the last scored window.",
              labels={N.L_METRIC: N.PERF_METRICS}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_PERF_ESTIMATED, "gauge", "Label-free (CBPE) estimate for the last scored window.",
              labels={N.L_METRIC: N.PERF_METRICS}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_PERF_BAND_LOWER, "gauge", "Lower edge of the expected band at the window's label count.",
              labels={N.L_METRIC: N.PERF_METRICS}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_PERF_BAND_UPPER, "gauge", "Upper edge of the expected band at the window's label count.",
              labels={N.L_METRIC: N.PERF_METRICS}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_LABEL_COVERAGE, "gauge", "Share of the last scored window's predictions with an outcome.",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_LABEL_DELAY, "gauge", "Median label delay of the last scored window.", "s",
              multiprocess_mode="mostrecent"),
    MetricDef(N.M_FEEDBACK_OUTCOMES, "counter", "Outcomes received, by result.",
              labels={N.L_RESULT: ("accepted", "duplicate", "pending", "rejected", "conflict", "unavailable",
                                   "unknown", "replaced")}),
    MetricDef(N.M_OUTCOMES_EXPIRED, "counter", "Outcomes that never matched a prediction and expired."),
    MetricDef(N.M_PREDICTIONS_LOGGED, "counter", "Predictions written to the prediction log.", "{row}"),
    MetricDef(N.M_ALERTS_FIRING, "gauge", "Alerts firing now, per rule (from the store: the same in every worker).",
              labels={N.L_RULE: N.DOMAIN_RULES}, multiprocess_mode="mostrecent"),
    MetricDef(N.M_ALERT_TRANSITIONS, "counter", "Alert transitions, per rule and new state.",
              labels={N.L_RULE: N.DOMAIN_RULES, N.L_STATE: ("firing", "resolved")}),
    MetricDef(N.M_ALERT_NOTIFICATIONS, "counter", "Alert notification attempts, per sink kind and result.",
              labels={N.L_SINK: ("log", "otel", "webhook"), N.L_RESULT: ("delivered", "retry", "failed")}),
)

BY_NAME = {d.name: d for d in DEFINITIONS}


class Instrument:
    """One metric, both backends. Use :meth:`add` (counter), :meth:`record`
    (histogram) or :meth:`set` (gauge); labels are keyword arguments."""

    __slots__ = ("definition", "_otel", "_prom", "_allowed", "_cache")

    def __init__(self, definition: MetricDef, otel: Any, prom: Any, domains: Mapping[str, Iterable[str]] = {}):
        self.definition = definition
        self._otel = otel
        self._prom = prom
        self._allowed = {k: frozenset(map(str, domains.get(v, ())) if isinstance(v, str) else v)
                         for k, v in definition.labels.items()}
        self._cache: dict[tuple, tuple[dict[str, str], Any]] = {}

    def _bound(self, labels: dict[str, str]):
        key = tuple(labels.get(k, "") for k in self._allowed)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        clean = {}
        for k, allowed in self._allowed.items():
            v = str(labels.get(k, ""))
            clean[k] = v if v in allowed else "other"
        prom = self._prom.labels(**clean) if (self._prom is not None and clean) else self._prom
        hit = (clean, prom)
        if len(self._cache) < 1024:  # the cache is bounded too
            self._cache[key] = hit
        return hit

    def add(self, value: float = 1, **labels: str) -> None:
        attrs, prom = self._bound(labels)
        if self._otel is not None:
            self._otel.add(value, attrs)
        if prom is not None:
            prom.inc(value)

    def record(self, value: float, **labels: str) -> None:
        attrs, prom = self._bound(labels)
        if self._otel is not None:
            self._otel.record(value, attrs)
        if prom is not None:
            prom.observe(value)

    def set(self, value: float, **labels: str) -> None:
        attrs, prom = self._bound(labels)
        if self._otel is not None:
            self._otel.set(value, attrs)
        if prom is not None:
            prom.set(value)


class Metrics:
    """All of Vigil's instruments.

    Parameters
    ----------
    domains : mapping, optional
        Values allowed for domain-typed labels (e.g. ``features``: the model's feature
        names), fixed at start from the model's schema.
    meter : opentelemetry.metrics.Meter, optional
        Where the OTel instruments are created (None: OTel side off).
    prometheus : bool
        Create ``prometheus_client`` metrics too. Import happens here, so under BentoML
        create this in the service's ``__init__`` (after the multiprocess directory is set).
    registry : prometheus_client.CollectorRegistry, optional
        Registry for the Prometheus metrics; None leaves them unregistered, which is
        what multiprocess mode wants (the collector reads the shared files).
    """

    def __init__(self, meter: Any = None, prometheus: bool = True, registry: Any = None,
                 definitions: Iterable[MetricDef] = DEFINITIONS, domains: Mapping[str, Iterable[str]] | None = None):
        self._instruments: dict[str, Instrument] = {}
        self._lock = threading.Lock()
        prom_mod = None
        if prometheus:
            import prometheus_client as prom_mod
        domains = {k: tuple(map(str, v)) for k, v in (domains or {}).items()}
        for d in definitions:
            self._instruments[d.name] = Instrument(d, self._otel(meter, d), self._prom(prom_mod, registry, d), domains)

    @staticmethod
    def _otel(meter: Any, d: MetricDef):
        if meter is None:
            return None
        if d.kind == "counter":
            return meter.create_counter(d.name, unit=d.unit, description=d.description)
        if d.kind == "histogram":
            return meter.create_histogram(d.name, unit=d.unit, description=d.description,
                                          explicit_bucket_boundaries_advisory=list(d.buckets) if d.buckets else None)
        return meter.create_gauge(d.name, unit=d.unit, description=d.description)

    @staticmethod
    def _prom(mod: Any, registry: Any, d: MetricDef):
        if mod is None:
            return None
        labels = list(d.labels)
        name = d.prometheus_name
        if d.kind == "counter":
            return mod.Counter(name, d.description, labels, registry=registry)
        if d.kind == "histogram":
            return mod.Histogram(name, d.description, labels, registry=registry, buckets=d.buckets)
        return mod.Gauge(name, d.description, labels, registry=registry, multiprocess_mode=d.multiprocess_mode)

    def __getitem__(self, name: str) -> Instrument:
        return self._instruments[name]
