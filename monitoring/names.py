"""Every metric name, span name and attribute key Vigil emits, in one place, and the
bounded sets of label values (outcomes, validation error kinds, performance metrics).

What is ours lives under the ``vigil.`` prefix (OTel) / ``vigil_`` (Prometheus);
what is standard follows OpenTelemetry semantic conventions.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- span names -------------------------------------------------------------
SPAN_VALIDATE = "vigil.validate"
SPAN_MODEL = "vigil.model.predict"
SPAN_MONITOR_HANDOFF = "vigil.monitor.enqueue"

# --- span / metric attribute keys --------------------------------------------
ATTR_MODEL_NAME = "vigil.model.name"
ATTR_MODEL_VERSION = "vigil.model.version"
ATTR_ROWS = "vigil.request.rows"
ATTR_REQUEST_ID = "vigil.request.id"
ATTR_CLIENT_REQUEST_ID = "vigil.request.client_id"
ATTR_OUTCOME = "vigil.outcome"
ATTR_ENDPOINT = "vigil.endpoint"
ATTR_ERROR_KIND = "vigil.error.kind"
ATTR_ERROR_COUNT = "vigil.validation.error_count"
ATTR_QUEUE_ACCEPTED = "vigil.monitor.accepted"
ATTR_ERROR_TYPE = "error.type"  # OTel semconv

# outcome values (bounded set: used as metric labels)
OUTCOME_OK = "ok"
OUTCOME_CLIENT_ERROR = "client_error"
OUTCOME_SERVER_ERROR = "server_error"

# --- metrics (OTel name, Prometheus name is derived: dots -> underscores) ----
M_REQUESTS = "vigil.requests"
M_REQUEST_DURATION = "vigil.request.duration"
M_REQUEST_ROWS = "vigil.request.rows"
M_VALIDATION_ERRORS = "vigil.validation.errors"
M_MODEL_ERRORS = "vigil.model.errors"
M_PREDICTIONS = "vigil.predictions"
M_MONITOR_ENQUEUED = "vigil.monitor.enqueued.rows"
M_MONITOR_DROPPED = "vigil.monitor.dropped.rows"
M_MONITOR_PROCESSED = "vigil.monitor.processed.rows"
M_MONITOR_QUEUE_DEPTH = "vigil.monitor.queue.depth"
M_MONITOR_ERRORS = "vigil.monitor.errors"
M_TELEMETRY_DROPPED = "vigil.telemetry.dropped"
M_PROCESS_CPU = "vigil.process.cpu.utilization"
M_PROCESS_RSS = "vigil.process.memory.rss"
M_PROCESS_FDS = "vigil.process.open_fds"
M_PROCESS_THREADS = "vigil.process.threads"
M_HOST_CPU = "vigil.host.cpu.utilization"
M_HOST_MEMORY = "vigil.host.memory.utilization"
M_GPU_UTIL = "vigil.gpu.utilization"
M_GPU_MEMORY_USED = "vigil.gpu.memory.used"
M_GPU_MEMORY_TOTAL = "vigil.gpu.memory.total"

M_DRIFT_SCORE = "vigil.drift.score"
M_DRIFT_FLAG = "vigil.drift.flagged"
M_DRIFT_SHARE = "vigil.drift.share"
M_DRIFT_MULTIVARIATE = "vigil.drift.multivariate.score"
M_QUALITY_MISSING = "vigil.quality.missing.rate"
M_QUALITY_OUT_OF_RANGE = "vigil.quality.out_of_range.rate"
M_QUALITY_UNSEEN = "vigil.quality.unseen.rate"
M_PREDICTION_CLASS_SHARE = "vigil.prediction.class.share"
M_PREDICTION_CONFIDENCE = "vigil.prediction.confidence.mean"
M_PREDICTION_DRIFT_PVALUE = "vigil.prediction.drift.p_value"
M_PREDICTION_MEAN = "vigil.prediction.mean"
M_PREDICTION_VARIANCE = "vigil.prediction.variance"
M_WINDOW_ROWS = "vigil.window.rows"
M_WINDOWS_CLOSED = "vigil.windows.closed"

M_PERF_REALIZED = "vigil.performance.realized"
M_PERF_ESTIMATED = "vigil.performance.estimated"
M_PERF_BAND_LOWER = "vigil.performance.band.lower"
M_PERF_BAND_UPPER = "vigil.performance.band.upper"
M_LABEL_COVERAGE = "vigil.label.coverage"
M_LABEL_DELAY = "vigil.label.delay.p50"
M_FEEDBACK_OUTCOMES = "vigil.feedback.outcomes"
M_OUTCOMES_EXPIRED = "vigil.feedback.expired"
M_PREDICTIONS_LOGGED = "vigil.predictions.logged"

M_ALERTS_FIRING = "vigil.alerts.firing"
M_ALERT_TRANSITIONS = "vigil.alerts.transitions"
M_ALERT_NOTIFICATIONS = "vigil.alerts.notifications"

# --- performance metrics (values of the ``metric`` label) ---------------------------

@dataclass(frozen=True)
class PerformanceMetric:
    """One model-performance metric: its name, the task it applies to, which way is better,
    and the range its expected band is clipped to (None: that side is left open)."""

    name: str
    task: str
    higher_is_better: bool
    lower: float | None
    upper: float | None


#: Every performance metric Vigil computes, reports and alerts on, defined once.
PERFORMANCE_METRICS: dict[str, PerformanceMetric] = {m.name: m for m in (
    PerformanceMetric("accuracy", "classification", True, 0.0, 1.0),
    PerformanceMetric("precision", "classification", True, 0.0, 1.0),
    PerformanceMetric("recall", "classification", True, 0.0, 1.0),
    PerformanceMetric("f1", "classification", True, 0.0, 1.0),
    PerformanceMetric("roc_auc", "classification", True, 0.0, 1.0),
    PerformanceMetric("log_loss", "classification", False, 0.0, None),
    PerformanceMetric("mse", "regression", False, 0.0, None),
    PerformanceMetric("rmse", "regression", False, 0.0, None),
    PerformanceMetric("mae", "regression", False, 0.0, None),
    PerformanceMetric("r2", "regression", True, None, None),
    PerformanceMetric("mape", "regression", False, 0.0, None),
)}
PERF_METRICS = tuple(PERFORMANCE_METRICS)
#: The regression metrics that are a mean of a per-row loss, so Direct Loss Estimation can
#: estimate them without labels (stats/dle.py); rmse is the root of the mse estimate.
DLE_METRICS = ("mae", "mse", "rmse")
#: The metrics a ``performance.*`` rule may name, per task (what ``window_performance`` reports).
TASK_METRICS = {task: tuple(m.name for m in PERFORMANCE_METRICS.values() if m.task == task)
                for task in ("classification", "regression")}
HIGHER_IS_BETTER = {m.name: m.higher_is_better for m in PERFORMANCE_METRICS.values()}

# --- alert span / log names -------------------------------------------------------
SPAN_ALERT = "vigil.alert"
EVENT_ALERT_PREFIX = "vigil.alert."
ATTR_ALERT_RULE = "vigil.alert.rule"
ATTR_ALERT_INSTANCE = "vigil.alert.instance"
ATTR_ALERT_STATUS = "vigil.alert.status"
ATTR_ALERT_SEVERITY = "vigil.alert.severity"
ATTR_ALERT_KEY = "vigil.alert.idempotency_key"
ATTR_ALERT_WINDOW = "vigil.alert.window_id"
ATTR_ALERT_VALUE = "vigil.alert.value"
ATTR_ALERT_TRACES = "vigil.alert.trace_ids"

# metric label keys (Prometheus-safe spelling of the attribute)
L_ENDPOINT = "endpoint"
L_OUTCOME = "outcome"
L_KIND = "kind"
L_MODEL = "model"
L_SIGNAL = "signal"
L_GPU = "gpu"
L_FEATURE = "feature"
L_CLASS = "class"
L_METRIC = "metric"
L_RESULT = "result"
L_RULE = "rule"
L_STATE = "state"
L_SINK = "sink"

#: label domains filled per model at start (values come from the model's schema, never requests)
DOMAIN_FEATURES = "features"
DOMAIN_CLASSES = "classes"
DOMAIN_RULES = "rules"
MULTIVARIATE_FEATURE = "__multivariate__"

# validation error kinds (bounded set: used as metric labels)
ERR_MALFORMED = "malformed"
ERR_EMPTY_BATCH = "empty_batch"
ERR_TOO_MANY_ROWS = "too_many_rows"
ERR_MISSING_FEATURE = "missing_feature"
ERR_UNKNOWN_FEATURE = "unknown_feature"
ERR_WRONG_TYPE = "wrong_type"
ERR_NULL = "null_not_allowed"
ERR_NON_FINITE = "non_finite"
ERR_OVERFLOW = "overflow"
ERR_UNSEEN_CATEGORY = "unseen_category"
ERR_BODY_TOO_LARGE = "body_too_large"
ERR_UNAUTHORIZED = "unauthorized"
ERR_BAD_ID = "bad_instance_id"

VALIDATION_ERROR_KINDS = (
    ERR_MALFORMED, ERR_EMPTY_BATCH, ERR_TOO_MANY_ROWS, ERR_MISSING_FEATURE,
    ERR_UNKNOWN_FEATURE, ERR_WRONG_TYPE, ERR_NULL, ERR_NON_FINITE, ERR_OVERFLOW,
    ERR_UNSEEN_CATEGORY, ERR_BODY_TOO_LARGE, ERR_UNAUTHORIZED, ERR_BAD_ID,
)


def prometheus_name(otel_name: str) -> str:
    """``vigil.request.duration`` -> ``vigil_request_duration``."""
    return otel_name.replace(".", "_")
