"""``ModelMonitor``: the one object that builds and runs a served model's monitoring.

Built once per worker from the settings, the registered model (:class:`ModelInfo`) and the
telemetry handles (:class:`TelemetryHandles`); the HTTP layer (``service/``) calls it and is
never called back. It owns:

- the request-path entry points, each cheap and non-blocking: :meth:`offer` (one bounded
  queue offer), :meth:`record_request` (a lock and a few integer operations),
  :meth:`note_rejection`;
- the monitor thread (a :class:`~monitoring.runtime.queue.MonitorQueue` whose consumer is
  this object): rows into windows, then on every tick the performance tracker, the alert
  engine and reference adoption, in that order; closed windows and scored performance
  come back as return values and are published (gauges) and judged (alert rules) here;
- the feedback group committer, the alert notifier thread, the system sampler;
- typed views (:meth:`status`, :meth:`drift`, :meth:`performance`, :meth:`alerts`,
  :meth:`feature`) and operator actions (:meth:`silence`, :meth:`unsilence`,
  :meth:`acknowledge`, :meth:`rebaseline`).

Failure modes: views and actions raise :class:`~monitoring.store.StoreUnavailable` when the
store is down (the HTTP layer answers 503); actions raise :class:`ActionInvalid` (422) or
:class:`ActionNotFound` (404). Nothing on the monitor thread raises out of it: store errors
are counted and retried at the next tick. :meth:`close` is bounded by its budget.

Exception tree::

    ValueError
     └── ActionInvalid     (a well-formed request naming something the model lacks)
    LookupError
     └── ActionNotFound    (no such silence, firing alert, adoptable window or feature)
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from monitoring import names as N
from monitoring.alerts import SERIES, TASK_METRICS, RuleContext, active_rules, check_labels
from monitoring.alerts.defaults import ModelShape, default_context, performance_plan
from monitoring.config import Settings
from monitoring.intake.outcomes import RequestIds
from monitoring.alerts.gauges import publish_performance, publish_report
from monitoring.metrics import Metrics
from monitoring.runtime.alert_engine import AlertEngine, AlertOptions
from monitoring.runtime.committer import GroupCommitter
from monitoring.runtime.history import WindowHistory
from monitoring.runtime.notifier import Notifier, build_sinks
from monitoring.runtime.performance import PerformanceTracker, Schedule, Scorer
from monitoring.runtime.predlog import PredictionLogger
from monitoring.runtime.queue import MonitorItem, MonitorQueue
from monitoring.runtime.system import SystemSampler
from monitoring.runtime import views
from monitoring.runtime.readable import iso
from monitoring.runtime.windows import ClosedWindow, WindowConfig, WindowManager, worker_id
from monitoring.schema import ModelSchema
from monitoring.stats import impact
from monitoring.stats.dle import Dle
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.performance import Baseline, Cbpe, PerformanceConfig
from monitoring.stats.profile import Profile, singletons
from monitoring.stats.serving import ServingStats
from monitoring.store import KEEP_SKETCHES, Store, StoreUnavailable

log = logging.getLogger("vigil.monitor")

#: How often the monitor thread looks for a newly adopted reference, seconds.
REFERENCE_CHECK_SECONDS = 5.0


class ActionInvalid(ValueError):
    """An operator action names something this model does not have (HTTP 422)."""


class ActionNotFound(LookupError):
    """An operator action's (or a view's) target does not exist (HTTP 404)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the monitor needs of a registered model (``models.registry`` builds it).

    ``validation``: the validation rows' true labels, the model's predictions and
    probabilities (None for regressors), after any decision threshold; ``importance``:
    each feature's permutation importance (drift impact); ``dle``: the regressor's loss
    models (label-free MAE/MSE/RMSE). Both None when the model was stored without them."""

    tag: str
    name: str
    version: str
    schema: ModelSchema
    profile: Profile
    validation: tuple[np.ndarray, np.ndarray, np.ndarray | None]
    in_sample: bool = False
    baseline: Mapping[str, float] = field(default_factory=dict)
    reference_rows: int | None = None
    importance: Mapping[str, float] | None = None
    dle: Dle | None = None


@dataclass(frozen=True)
class TelemetryHandles:
    """OpenTelemetry handles the monitor emits through: ``meter`` (None: Prometheus only),
    ``tracer`` (webhook delivery spans), ``logger`` (the ``otel`` alert sink)."""

    meter: Any = None
    tracer: Any = None
    logger: Any = None


class ModelMonitor:
    """Builds and runs the monitoring of one served model in this worker. Call
    :meth:`start` once, :meth:`close` at shutdown."""

    def __init__(self, settings: Settings, model: ModelInfo, telemetry: TelemetryHandles = TelemetryHandles(),
                 *, worker: str | None = None):
        self.settings = settings
        self.model = model
        self.tag = model.tag
        self.schema = model.schema
        self.worker = worker or worker_id()
        self.shape = _shape(model)
        self.rules = active_rules(settings, model.schema.task, model.profile.detector is not None, self.shape)
        self.metrics = Metrics(meter=telemetry.meter, domains={
            N.DOMAIN_FEATURES: model.schema.names, N.DOMAIN_CLASSES: [str(c) for c in model.schema.classes],
            N.DOMAIN_RULES: [d.rule.name for d in self.rules]})
        self.store = Store(settings.resolved_store_url, connect_timeout=settings.store_timeout)
        self.committer = GroupCommitter(self.store, self.tag)
        #: issues /predict's request ids and recognises them in feedback (one key per model, in the store)
        self.request_ids = RequestIds(self.store.outcomes.request_id_key(self.tag))
        self.evaluator = WindowEvaluator(model.schema, model.profile, DriftConfig(
            alpha=settings.drift_alpha, effect_floor=settings.drift_effect_floor, min_rows=settings.window_min_rows))
        self.baseline, cbpe, pconf = _performance(settings, model)
        self.serving = ServingStats(self.worker)
        self.alert_engine, self.notifier = self._alerting(telemetry)
        self.tracker = PerformanceTracker(
            self.store, self.tag,
            Scorer(model.schema.task, len(model.schema.classes), self.baseline, cbpe, pconf,
                   tuple(model.schema.classes), dle=model.dle if model.schema.task == "regression" else None,
                   dle_features=settings.log_sample_rate > 0 and set(settings.privacy.values()) <= {"keep"}),
            Schedule(settings.performance_interval, settings.outcome_ttl_seconds,
                     None if settings.retention_days is None else settings.retention_days * 86400),
            metrics=self.metrics)
        self.windows = WindowManager(
            self.store, self.tag, self.evaluator, WindowConfig(settings.window_rows, settings.window_seconds,
                                                               worker=self.worker),
            prediction_log=PredictionLogger(self.tag, model.schema, settings.log_sample_rate, settings.privacy,
                                            settings.privacy_salt.get_secret_value()),
            serving=self.serving, metrics=self.metrics)
        if model.importance:  # each window's features ranked by importance x drift effect
            self.windows.annotate = functools.partial(impact.annotate, weight=impact.weights(model.importance))
        self.history = WindowHistory(self.store, self.tag, model.schema.names)  # what the dashboard reads
        self.queue = MonitorQueue(self, settings.monitor_queue_batches, self.metrics)
        self.system = SystemSampler(self.metrics, settings.system_metrics_interval, on_sample=self.serving.note_system)
        self._reference_version, self._reference_window = 0, None
        self._reference_checked = 0.0

    def _alerting(self, telemetry: TelemetryHandles) -> tuple[AlertEngine, Notifier]:
        schema, profile, s = self.schema, self.model.profile, self.settings
        ctx = RuleContext(features=tuple(schema.names), classes=tuple(str(c) for c in schema.classes),
                          metrics=TASK_METRICS[schema.task], reference_rows=profile.rows,
                          drift_alpha=s.drift_alpha, error_rate=s.alert_error_rate,
                          rate_effect_floor=s.rate_effect_floor, reference_singletons=singletons(profile))
        check_labels(self.rules, ctx)
        sinks = build_sinks(list(s.alert_webhooks), tracer=telemetry.tracer, otel_logger=telemetry.logger)
        notifier = Notifier(self.store, self.tag, sinks, self.worker, metrics=self.metrics)
        ref_stats = {name: (st.mean, st.variance ** 0.5 if st.variance > 0 else 1.0)
                     for name, st in profile.numeric.items() if st.n}
        engine = AlertEngine(self.store, self.tag, self.rules, ctx, AlertOptions(
            sinks=tuple(sinks), trace_url=s.alert_trace_url, examples=s.alert_examples, ref_stats=ref_stats,
            on_enqueue=notifier.wake, impact_of=self._impact_of if self.model.importance else None),
            baseline=self.baseline, metrics=self.metrics)
        return engine, notifier

    def _impact_of(self, window_id: int) -> list | None:
        """The window's features ranked by drift impact (a performance alert's evidence)."""
        return impact.ranking(self.store.windows.sketch(self.tag, window_id)[1])

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "ModelMonitor":
        prepare_in_background(self.evaluator, self.settings.window_rows)
        self.queue.start()
        self.system.start()
        self.notifier.start()
        return self

    def close(self, budget: float) -> None:
        """Stop the threads and drain the queue within ``budget`` seconds (best effort)."""
        self.system.stop(timeout=min(1.0, budget / 4))
        self.notifier.stop(timeout=min(1.0, budget / 4))
        if not self.queue.close(timeout=budget / 2):
            log.warning("monitor queue not drained at shutdown: %s", self.queue.stats())
        self.store.dispose()

    # -- the request path (cheap, never blocks) ----------------------------------------------
    def offer(self, item: MonitorItem) -> bool:
        """Hand a served batch to the monitor thread; False (counted) when the queue is full."""
        return self.queue.offer(item)

    def record_request(self, status: int, seconds: float, trace_id: str | None) -> None:
        """One ``/predict`` request's status and latency, for the window's serving figures."""
        self.serving.record(status, seconds, trace_id)

    def note_rejection(self, kind: str) -> None:
        self.windows.note_rejection(kind)

    def submit_outcomes(self, items: Sequence, timeout: float):
        """Commit parsed outcomes (group commit); returns the store's ingest result."""
        return self.committer.submit(items, timeout=timeout)

    # -- the monitor thread (MonitorQueue's consumer) ---------------------------------------------
    def consume(self, items: Sequence[MonitorItem]) -> None:
        self._closed(self.windows.consume(items))

    def tick(self) -> None:
        self._closed(self.windows.tick())
        for result in self.tracker.tick():  # typed; observers and gauges read its stored (JSON) form
            self._guarded(publish_performance, self.metrics, result.stored)
            self.alert_engine.on_performance(result.stored)
        self.alert_engine.tick()
        self._adopt_reference()

    def _closed(self, windows: list[ClosedWindow]) -> None:
        for w in windows:
            self._guarded(publish_report, self.metrics, w.report)
            self.alert_engine.on_window(w.stored)

    @staticmethod
    def _guarded(fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a publisher bug must not stop evaluation or scoring
            log.exception("publishing %s failed", getattr(fn, "__name__", fn))

    def _adopt_reference(self) -> None:
        """Switch to the newest adopted drift reference, if another worker (or an operator
        on any replica) adopted one since the last check."""
        now = time.time()
        if now - self._reference_checked < REFERENCE_CHECK_SECONDS:
            return
        self._reference_checked = now
        try:
            version = self.store.references.version(self.tag)
            if version <= self._reference_version:
                return
            got = self.store.references.get(self.tag, version)
        except StoreUnavailable as exc:  # store down: try again at the next check
            log.warning("reference check failed: %s", exc.reason)
            return
        if got is None:
            return
        wid, sketch = got
        ref = Profile.from_dict(sketch)
        ref.detector = recalibrated(self.model.profile.detector, ref.multivariate)
        evaluator = WindowEvaluator(self.schema, ref, self.evaluator.config)
        prepare_in_background(evaluator, self.settings.window_rows)  # off the monitor thread
        self.windows.set_reference(ref, evaluator)
        self.evaluator = evaluator
        self.alert_engine.ctx.reference_rows = ref.rows
        self.alert_engine.ctx.reference_singletons = singletons(ref)
        self._reference_version, self._reference_window = version, wid
        log.info("adopted window %d of %s as the drift reference (version %d, %d rows)", wid, self.tag,
                 version, ref.rows)

    # -- views (built in monitoring.runtime.views) ------------------------------------------
    def reference_in_use(self) -> dict[str, Any]:
        """The drift reference this worker judges windows against: version 0 is the model's."""
        return {"version": self._reference_version, "window_id": self._reference_window,
                "rows": self.windows.reference.rows}

    def status(self) -> dict[str, Any]:
        """This worker's view of the monitor: queue, windows, alerts (store-backed parts
        degrade to an ``unavailable`` note instead of failing)."""
        return views.status(self)

    def drift(self, limit: int, since: float | None = None) -> dict[str, Any]:
        """The last ``limit`` evaluated windows, newest first."""
        return views.drift(self, limit, since)

    def timeline(self, limit: int, since: float | None = None) -> dict[str, Any]:
        """The last ``limit`` windows' figures in columns, oldest first (the dashboard's panels)."""
        return views.windows(self, limit, since)

    def feature(self, name: str, limit: int, histograms: int = 20, since: float | None = None) -> dict[str, Any]:
        """One feature's drill-down: statistic, p-values and quality per window, histograms."""
        if name not in self.schema.names:
            raise ActionNotFound(f"no feature {name!r} in {self.tag}")
        return views.feature(self, name, limit, histograms, since)

    def performance(self, limit: int) -> dict[str, Any]:
        """Realized and estimated performance of the last ``limit`` scored windows."""
        return views.performance(self, limit)

    def alerts(self, limit: int) -> dict[str, Any]:
        """Rules, alert states, silences and the last ``limit`` transitions."""
        return views.alerts(self, limit)

    # -- operator actions ---------------------------------------------------------------------------
    def silence(self, rule: str, seconds: float, instance: str | None = None, reason: str | None = None,
                by: str | None = None) -> dict[str, Any]:
        if rule != "*" and rule not in self.alert_engine.rules:
            raise ActionInvalid(f"rule must be '*' or one of: {', '.join(self.alert_engine.rules)}")
        now = time.time()
        sid = self.store.alerts.add_silence(self.tag, rule, instance, now + seconds, reason, by, now)
        return {"id": sid, "rule": rule, "instance": instance, "until": now + seconds, "until_iso": iso(now + seconds)}

    def unsilence(self, silence_id: int) -> dict[str, Any]:
        if not (0 <= silence_id < 2 ** 63 and self.store.alerts.end_silence(self.tag, silence_id, time.time())):
            raise ActionNotFound(f"no active silence {silence_id}")
        return {"id": silence_id, "ended": True}

    def acknowledge(self, rule: str, instance: str | None = None, by: str | None = None) -> dict[str, Any]:
        d = self.alert_engine.rules.get(rule)
        if d is None:
            raise ActionInvalid(f"rule must be one of: {', '.join(self.alert_engine.rules)}")
        single = SERIES[d.rule.series].label is None  # a per-window series has one instance: ""
        n = self.store.alerts.acknowledge(self.tag, rule, instance or ("" if single else None), by, time.time())
        if n == 0:
            raise ActionNotFound(f"no firing alert for rule {rule}" + (f" [{instance}]" if instance else ""))
        return {"acknowledged": n}

    def rebaseline(self, window_id: int, by: str | None = None) -> dict[str, Any]:
        """Adopt an evaluated window as the drift reference (every worker picks it up within
        seconds). Performance baselines are unchanged: they need labelled data."""
        sketch, report = self.store.windows.sketch(self.tag, window_id)
        if sketch is None:
            raise ActionNotFound(f"window {window_id} is not one of the last {KEEP_SKETCHES} evaluated windows of "
                                 f"{self.tag}; only those can be adopted")
        if report is not None and report.get("too_small"):
            raise ActionInvalid(f"window {window_id} has {report.get('rows')} rows, fewer than window_min_rows")
        version = self.store.references.adopt(self.tag, window_id, sketch, by, time.time())
        self._reference_checked = 0.0
        return {"version": version, "window_id": window_id, "rows": sketch.get("rows")}


def _performance(settings: Settings, model: ModelInfo) -> tuple[Baseline, Cbpe | None, PerformanceConfig]:
    """The validation baseline (bands), the CBPE estimator (classifiers with probabilities)
    and the performance settings."""
    y_true, y_pred, proba = model.validation
    sigmas, _, _ = performance_plan(default_context(settings, model.schema.task, model.profile.detector is not None,
                                                    _shape(model)))
    pconf = PerformanceConfig(coverage_target=settings.label_coverage_target,
                              max_label_delay=settings.label_max_delay_seconds, band_sigmas=sigmas,
                              floors=dict(settings.performance_floors),
                              effect_floors=dict(settings.performance_effect_floors))
    task, k = model.schema.task, len(model.schema.classes)
    baseline = Baseline(task, y_true, y_pred, proba, k, model.in_sample, pconf)
    cbpe = (Cbpe(y_true, proba) if task == "classification" and proba is not None
            and len(set(y_true.tolist())) > 1 else None)
    return baseline, cbpe, pconf


def _shape(model: ModelInfo) -> ModelShape:
    """The sizes the default rules' derivation reads (monitoring.alerts.defaults)."""
    return ModelShape(reference_rows=model.profile.rows, validation_rows=len(model.validation[0]),
                      features=len(model.schema.names), categorical=len(model.schema.categorical))


def prepare_in_background(evaluator: WindowEvaluator, rows: int) -> threading.Thread:
    """Fill the bootstrap nulls of ``rows``-row windows on a daemon thread (off the request
    path and the monitor thread; the first window would otherwise pay for them). Never raises."""

    def work() -> None:
        t, c = time.perf_counter(), time.thread_time()
        try:
            added = evaluator.prepare(rows)
        except Exception:
            log.exception("preparing drift nulls for %d-row windows failed (the first window fills them)", rows)
            return
        log.info("drift nulls for %d-row windows prepared: %d added in %.2f s (%.2f s CPU)", rows, added,
                 time.perf_counter() - t, time.thread_time() - c)

    thread = threading.Thread(target=work, name="vigil-prepare-nulls", daemon=True)
    thread.start()
    return thread


def recalibrated(detector: PcaDetector | None, errors) -> PcaDetector | None:
    """The multivariate detector re-centred on an adopted window's reconstruction errors."""
    if detector is None or errors is None or errors.n < 2:
        return detector
    return replace(detector, cal_mean=float(errors.mean), cal_var=float(max(errors.variance, 1e-12)),
                   cal_n=int(errors.n))
