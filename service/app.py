"""The BentoML service: one class, thin, delegating to ``monitoring`` and ``models``.

Serve with ``bentoml serve service:MonitoredModel`` (or ``vigil serve``). The model is
``VIGIL_MODEL`` (default: the demo classifier). Its stored schema is read at import so
that the OpenAPI spec at ``/docs.json`` describes the real features.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, Field, WithJsonSchema

from monitoring import names as N
from monitoring.config import load_settings
from models.registry import read_schema

from . import bentoml_fixes, telemetry
from .middleware import SCOPE_COUNTED, VigilMiddleware

log = logging.getLogger("vigil.service")

SETTINGS = load_settings()
SCHEMA = read_schema(SETTINGS.model)
# Before BentoML builds its ASGI app: its request timer that never cancels (service/bentoml_fixes.py),
# and one tracer provider for its spans and ours.
bentoml_fixes.apply()
TELEMETRY = telemetry.install({"vigil.model": SETTINGS.model}, export_timeout=SETTINGS.otel_export_timeout,
                              keep_asgi_events=SETTINGS.trace_asgi_events)

_INSTANCES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": SETTINGS.max_batch_rows,
    "items": SCHEMA.json_schema(SETTINGS.instance_id_field),
    "description": "Rows to predict, one object per row with every feature of the model.",
}
_MAX_CLIENT_ID = 256


class PredictResponse(BaseModel):
    request_id: str = Field(description="Vigil's id for this request; post outcomes with it and the row index.")
    model: str = Field(description="Tag of the model that answered.")
    predictions: list[Any]
    classes: list[Any] | None = Field(None, description="Class order of `probabilities` (classifiers).")
    probabilities: list[list[float]] | None = Field(None, description="Per-row class probabilities.")


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="Outcomes newly stored (committed), matched or not yet.")
    duplicate: int = Field(description="Outcomes already stored with the same value (re-sends).")
    pending: int = Field(description="Of the accepted, those whose prediction is not logged yet (joined later).")


def _outcome_value_schema() -> dict[str, Any]:
    if SCHEMA.task == "classification":
        return {"enum": list(SCHEMA.classes), "description": "the true class"}
    return {"type": "number", "description": "the true value"}


_OUTCOME_ITEM = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string", "description": "request_id returned by /predict"},
        "index": {"type": "integer", "minimum": 0, "description": "row in that request's batch"},
        "instance_id": {"type": ["string", "integer"], "description": "your per-instance id (VIGIL_INSTANCE_ID_FIELD)"},
        "client_request_id": {"type": "string", "description": "the X-Request-ID you sent with /predict"},
        "outcome": _outcome_value_schema(),
        "observed_at": {"type": ["number", "string"], "description": "epoch seconds or ISO-8601; default: now"},
    },
    "required": ["outcome"],
    "additionalProperties": False,
}
_OUTCOMES_SCHEMA = {"type": "array", "minItems": 1, "maxItems": SETTINGS.max_feedback_items, "items": _OUTCOME_ITEM}


class _Runtime:
    """What the middleware needs from the live service (set once __init__ has run)."""

    settings = SETTINGS
    metrics = None
    serving = None  # monitoring.stats.serving.ServingStats: /predict outcomes and latency per window


RUNTIME = _Runtime()


def _traceparent(span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _json_error(ctx: bentoml.Context, status: int, body: dict[str, Any]):
    from starlette.responses import JSONResponse

    ctx.response.status_code = status  # BentoML copies the context's status onto the response
    return JSONResponse(body, status_code=status)


@bentoml.service(name="vigil", workers=SETTINGS.workers, traffic={"timeout": 60})
class MonitoredModel:
    stored_model = bentoml.models.BentoModel(SETTINGS.model)

    def __init__(self) -> None:
        from models.registry import load
        from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
        from monitoring.metrics import Metrics, publish_report
        from monitoring.runtime.queue import MonitorQueue
        from monitoring.store import Store
        from monitoring.runtime.system import SystemSampler
        from monitoring.intake.validation import Validator
        from monitoring.runtime.windows import WindowManager

        from models.adapters import ModelAdapter
        from models.registry import load_validation
        from monitoring.metrics import publish_performance
        from monitoring.stats.performance import Baseline, Cbpe, PerformanceConfig
        from monitoring.runtime.performance import PerformanceTracker
        from monitoring.runtime.predlog import PredictionLogger

        self.settings = SETTINGS
        self.loaded = load(self.stored_model)
        self.schema = self.loaded.schema
        if SETTINGS.decision_threshold is not None:
            self.loaded.adapter = ModelAdapter(self.loaded.adapter.model, self.schema,
                                               decision_threshold=SETTINGS.decision_threshold)
        self.tracer = TELEMETRY.tracer()
        self.child_spans = telemetry.ChildSpans(TELEMETRY)
        from .inline import InlinePolicy

        self.inline = InlinePolicy(SETTINGS.inline_predict_ms / 1000)
        self._limiter = None
        # without a metrics exporter the OTel side would only cost time: Prometheus alone then
        self.rules = _rules(self.schema, self.loaded.profile)
        self.metrics = Metrics(meter=TELEMETRY.meter() if TELEMETRY.metrics_exporting else None, domains={
            N.DOMAIN_FEATURES: self.schema.names, N.DOMAIN_CLASSES: [str(c) for c in self.schema.classes],
            N.DOMAIN_RULES: [d.rule.name for d in self.rules]})
        TELEMETRY.drops.bind(self.metrics)
        self.validator = Validator(self.schema, SETTINGS.max_batch_rows, SETTINGS.instance_id_field)
        self.store = Store(SETTINGS.resolved_store_url, connect_timeout=SETTINGS.store_timeout)
        from monitoring.runtime.committer import GroupCommitter

        self.committer = GroupCommitter(self.store, self.loaded.tag)
        self.evaluator = WindowEvaluator(self.schema, self.loaded.profile, DriftConfig(
            alpha=SETTINGS.drift_alpha, effect_floor=SETTINGS.drift_effect_floor, min_rows=SETTINGS.window_min_rows))

        _prepare_in_background(self.evaluator, SETTINGS.window_rows)
        y_true, y_pred, proba = load_validation(self.loaded)
        if SETTINGS.decision_threshold is not None and proba is not None:
            y_pred = (proba[:, 1] >= SETTINGS.decision_threshold).astype(int)
        k = len(self.schema.classes)
        pconf = PerformanceConfig(coverage_target=SETTINGS.label_coverage_target,
                                  max_label_delay=SETTINGS.label_max_delay_seconds,
                                  floors=dict(SETTINGS.performance_floors))
        self.baseline = Baseline(self.schema.task, y_true, y_pred, proba, k, self.loaded.in_sample, pconf)
        cbpe = (Cbpe(y_true, proba) if self.schema.task == "classification" and proba is not None
                and len(set(y_true.tolist())) > 1 else None)
        from monitoring.stats.serving import ServingStats
        from monitoring.runtime.windows import worker_id

        self.worker = worker_id()
        self.serving = ServingStats(self.worker)
        self.alerts, self.notifier = _build_alerts(self)

        def on_performance(result: dict) -> None:
            publish_performance(self.metrics, result)
            self.alerts.on_performance(result)

        self.tracker = PerformanceTracker(
            self.store, self.loaded.tag, self.schema.task, k, self.baseline, cbpe, pconf,
            interval=SETTINGS.performance_interval, outcome_ttl=SETTINGS.outcome_ttl_seconds,
            retention=None if SETTINGS.retention_days is None else SETTINGS.retention_days * 86400, metrics=self.metrics,
            publish=on_performance, class_names=self.schema.classes)
        self._reference_version = 0
        self._reference_checked = 0.0

        def after_tick() -> None:
            self.tracker.tick()
            self.alerts.tick()
            self._adopt_reference()

        self.windows = WindowManager(
            self.store, self.loaded.tag, self.loaded.profile, self.evaluator, window_rows=SETTINGS.window_rows,
            window_seconds=SETTINGS.window_seconds, task=self.schema.task, metrics=self.metrics,
            publish=lambda report: publish_report(self.metrics, report),
            prediction_log=PredictionLogger(self.loaded.tag, self.schema, SETTINGS.log_sample_rate, SETTINGS.privacy,
                                            SETTINGS.privacy_salt.get_secret_value()),
            after_tick=after_tick, serving=self.serving, on_window=self.alerts.on_window, worker=self.worker)
        self.queue = MonitorQueue(self.windows, SETTINGS.monitor_queue_batches, self.metrics).start()
        self.system = SystemSampler(self.metrics, SETTINGS.system_metrics_interval,
                                    on_sample=self.serving.note_system).start()
        self.notifier.start()
        self._model_attrs = {N.ATTR_MODEL_NAME: self.loaded.name, N.ATTR_MODEL_VERSION: self.loaded.version}
        self._classes = list(self.schema.classes) if self.schema.task == "classification" else None
        RUNTIME.metrics = self.metrics
        RUNTIME.serving = self.serving
        _freeze_startup_heap()
        if SETTINGS.api_token is None:
            log.warning("VIGIL_API_TOKEN is not set: /feedback is open to anyone, and fake labels would "
                        "poison the performance metrics. Set a token in production.")
        log.info("Vigil serving %s (%s, %d features)", self.loaded.tag, self.schema.task, len(self.schema.features))

    @bentoml.api(route="/predict")
    async def predict(
        self,
        instances: Annotated[Any, WithJsonSchema(_INSTANCES_SCHEMA)],
        ctx: bentoml.Context,
    ) -> PredictResponse:
        """Predict a batch of rows. Validated against the model's feature schema; 422
        (413 for too many rows) names the row and feature of each problem."""
        if self.inline.inline(len(instances) if isinstance(instances, list) else 1):
            return self._predict(instances, ctx, True)  # short work: skip the hop to the thread pool
        if self._limiter is None:  # created on the event loop; one thread, as BentoML's sync APIs
            import anyio

            self._limiter = anyio.CapacityLimiter(1)
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._predict, instances, ctx, limiter=self._limiter)

    def _predict(self, instances: Any, ctx: bentoml.Context, inline: bool = False) -> Any:
        """The request's work, on whichever thread :class:`~service.inline.InlinePolicy` chose."""
        wall, cpu = time.perf_counter(), time.thread_time()
        response, rows = self._predict_batch(instances, ctx)
        if rows:  # calls that reached the model: cheap rejections must not make it look fast
            self.inline.observe(time.thread_time() - cpu, time.perf_counter() - wall, rows, inline)
        return response

    def _predict_batch(self, instances: Any, ctx: bentoml.Context) -> tuple[Any, int]:
        """(response, rows handed to the model: 0 when the request was rejected first)."""
        from models.adapters import jsonable_labels
        from monitoring.runtime.queue import MonitorItem
        from monitoring.intake.validation import ValidationFailed

        received = time.time()
        request_id = uuid.uuid4().hex
        server_span = _current_span()
        ctx.response.headers["traceparent"] = _traceparent(server_span)
        ctx.response.headers["x-vigil-request-id"] = request_id
        client_id = ctx.request.headers.get("x-request-id")
        attrs = {**self._model_attrs, N.ATTR_REQUEST_ID: request_id}
        if client_id is not None:
            if not (0 < len(client_id) <= _MAX_CLIENT_ID and client_id.isprintable()):
                server_span.set_attributes(attrs)
                return self._reject(ctx, ValidationFailed([_header_error()])), 0
            attrs[N.ATTR_CLIENT_REQUEST_ID] = client_id

        spans = self.child_spans.for_request(server_span)
        model_attrs = self._model_attrs  # children: the request's ids are on the server span
        t = time.time_ns()
        try:
            batch = self.validator.validate(instances)
        except ValidationFailed as exc:
            spans.add(N.SPAN_VALIDATE, t, {**model_attrs, N.ATTR_OUTCOME: N.OUTCOME_CLIENT_ERROR,
                                           N.ATTR_ERROR_KIND: exc.kind, N.ATTR_ERROR_COUNT: int(exc.total)})
            server_span.set_attributes(attrs)
            return self._reject(ctx, exc), 0
        rows = batch.n_rows
        t_model = time.time_ns()
        spans.add(N.SPAN_VALIDATE, t, {**model_attrs, N.ATTR_ROWS: rows, N.ATTR_OUTCOME: N.OUTCOME_OK}, end_ns=t_model)

        with spans.activate() as model_span_id:
            try:
                pred = self.loaded.adapter.predict(batch)
            except Exception as exc:  # a model that raises: 5xx, recorded, worker keeps serving
                failed = {**model_attrs, N.ATTR_ROWS: rows, N.ATTR_OUTCOME: N.OUTCOME_SERVER_ERROR,
                          N.ATTR_ERROR_TYPE: type(exc).__qualname__}
                spans.add(N.SPAN_MODEL, t_model, failed, error=exc, span_id=model_span_id)
                server_span.set_attributes({**attrs, N.ATTR_ROWS: rows, N.ATTR_OUTCOME: N.OUTCOME_SERVER_ERROR})
                self.metrics[N.M_MODEL_ERRORS].add(1)
                log.exception("model %s raised on request %s", self.loaded.tag, request_id)
                return _json_error(ctx, 500, {"error": f"the model failed on this batch ({type(exc).__name__})",
                                              "request_id": request_id}), rows
        t = time.time_ns()
        spans.add(N.SPAN_MODEL, t_model, {**model_attrs, N.ATTR_ROWS: rows, N.ATTR_OUTCOME: N.OUTCOME_OK}, end_ns=t,
                  span_id=model_span_id)

        accepted = self.queue.offer(MonitorItem(
            request_id=request_id, received_at=received, batch=batch, labels=pred.labels, proba=pred.proba,
            class_codes=pred.class_codes, trace_id=f"{server_span.get_span_context().trace_id:032x}",
            client_request_id=client_id))
        spans.add(N.SPAN_MONITOR_HANDOFF, t, {**model_attrs, N.ATTR_ROWS: rows, N.ATTR_QUEUE_ACCEPTED: accepted})

        self.metrics[N.M_PREDICTIONS].add(rows)
        self.metrics[N.M_REQUEST_ROWS].record(rows, endpoint="predict")
        server_span.set_attributes({**attrs, N.ATTR_ROWS: rows, N.ATTR_OUTCOME: N.OUTCOME_OK})
        return PredictResponse(
            request_id=request_id, model=self.loaded.tag, predictions=jsonable_labels(pred.labels),
            classes=self._classes,
            probabilities=pred.proba.tolist() if pred.proba is not None else None,
        ), rows

    @bentoml.api(route="/feedback")
    def feedback(
        self,
        outcomes: Annotated[Any, WithJsonSchema(_OUTCOMES_SCHEMA)],
        ctx: bentoml.Context,
    ) -> FeedbackResponse:
        """Record true outcomes. 2xx means committed; re-sending is safe (duplicates are
        counted, not stored twice); a batch with an invalid (422) or conflicting (409) item
        is rejected whole; 503 when the store cannot commit (nothing stored: retry)."""
        from sqlalchemy.exc import SQLAlchemyError

        from monitoring.intake.outcomes import FeedbackInvalid, conflict_errors, parse_outcomes
        from monitoring.store import OutcomeConflict

        now = time.time()
        span = _current_span()
        span.set_attributes(self._model_attrs)
        ctx.response.headers["traceparent"] = _traceparent(span)
        try:
            items = parse_outcomes(outcomes, self.schema, SETTINGS.max_feedback_items, now)
            res = self.committer.submit(items, timeout=SETTINGS.store_timeout + 5)
        except FeedbackInvalid as exc:
            ctx.request.scope[SCOPE_COUNTED] = True
            self.metrics[N.M_FEEDBACK_OUTCOMES].add(1, result="rejected")
            self.metrics[N.M_VALIDATION_ERRORS].add(1, kind=N.ERR_MALFORMED if exc.status == 422 else N.ERR_TOO_MANY_ROWS)
            span.set_attribute(N.ATTR_OUTCOME, N.OUTCOME_CLIENT_ERROR)
            return _json_error(ctx, exc.status, exc.to_dict())
        except OutcomeConflict as exc:
            ctx.request.scope[SCOPE_COUNTED] = True
            self.metrics[N.M_FEEDBACK_OUTCOMES].add(1, result="conflict")
            span.set_attribute(N.ATTR_OUTCOME, N.OUTCOME_CLIENT_ERROR)
            return _json_error(ctx, 409, conflict_errors(exc.conflicts).to_dict())
        except (SQLAlchemyError, TimeoutError) as exc:
            self.metrics[N.M_FEEDBACK_OUTCOMES].add(1, result="unavailable")
            span.set_attribute(N.ATTR_OUTCOME, N.OUTCOME_SERVER_ERROR)
            span.set_attribute(N.ATTR_ERROR_TYPE, type(exc).__name__)
            log.warning("feedback not stored: store unavailable (%s)", type(exc).__name__)
            ctx.response.headers["retry-after"] = "5"
            return _json_error(ctx, 503, {"error": "the outcome store is unavailable; nothing was stored, retry later"})
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.accepted - res.pending, result="accepted")
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.pending, result="pending")
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.duplicate, result="duplicate")
        self.metrics[N.M_REQUEST_ROWS].record(len(items), endpoint="feedback")
        span.set_attributes({N.ATTR_ROWS: len(items), N.ATTR_OUTCOME: N.OUTCOME_OK})
        return FeedbackResponse(accepted=res.accepted, duplicate=res.duplicate, pending=res.pending)

    def performance(self, limit: int) -> dict[str, Any]:
        return {"model": self.loaded.tag, "task": self.schema.task, "in_sample_baseline": self.loaded.in_sample,
                "baseline": self.baseline.values, "window_rows": SETTINGS.window_rows,
                "outcomes": self.store.outcome_counts(self.loaded.tag),
                "windows": self.store.performance_windows(self.loaded.tag, limit)}

    def _reject(self, ctx: bentoml.Context, exc) -> Any:
        ctx.request.scope[SCOPE_COUNTED] = True
        self.metrics[N.M_VALIDATION_ERRORS].add(1, kind=exc.kind)
        self.windows.note_rejection(exc.kind)
        _current_span().set_attribute(N.ATTR_OUTCOME, N.OUTCOME_CLIENT_ERROR)
        return _json_error(ctx, exc.status, exc.to_dict())

    def status(self) -> dict[str, Any]:
        from sqlalchemy.exc import SQLAlchemyError

        q = self.queue.stats()
        w = self.windows.state()
        try:
            last = self.store.windows(self.loaded.tag, limit=1)
            counted = self.store.counter(f"rows:{self.loaded.tag}")
            store = "ok"
        except SQLAlchemyError as exc:
            last, counted, store = [], None, f"unavailable ({type(exc).__name__})"
        return {
            "model": self.loaded.tag,
            "worker_pid": os.getpid(),
            "task": self.schema.task,
            "features": len(self.schema.features),
            "in_sample_baseline": self.loaded.in_sample,
            "baseline": self.loaded.meta.get("baseline", {}),
            "reference_rows": self.loaded.meta.get("n_reference"),
            "monitor_queue": {"capacity": q.capacity, "depth": q.depth, "enqueued_rows": q.enqueued_rows,
                              "dropped_rows": q.dropped_rows, "processed_rows": q.processed_rows,
                              "consumer_errors": q.errors, "running": q.running},
            "windows": {"window_rows": SETTINGS.window_rows, "window_seconds": SETTINGS.window_seconds,
                        "rows_counted": counted, "store": store,
                        "open_in_this_worker": list(w.open_windows), "pending_rows": w.pending_rows,
                        "buffer_dropped_rows": w.buffered_dropped_rows, "store_errors": w.store_errors,
                        "store_error": w.last_error, "evaluated_by_this_worker": w.evaluated,
                        "last_closed": _window_summary(last[0]) if last else None},
            "alerts": self._alert_summary(),
            "predict_dispatch": self.inline.state(),
            "gc": _gc_state(),
            "drift_methods": self.evaluator.methods,
            "telemetry": {"traces_exporting": TELEMETRY.traces_exporting,
                          "metrics_exporting": TELEMETRY.metrics_exporting,
                          "dropped": dict(TELEMETRY.drops.counts)},
            "gpu": self.system.gpus.available,
        }

    def drift(self, limit: int) -> dict[str, Any]:
        records = self.store.windows(self.loaded.tag, limit=limit)
        return {"model": self.loaded.tag, "reference_rows": self.loaded.profile.rows,
                "window_rows": SETTINGS.window_rows, "alpha": SETTINGS.drift_alpha,
                "effect_floor": SETTINGS.drift_effect_floor,
                "windows": [{**(r.report or {}), "evaluated_at": r.evaluated_at} for r in records]}

    def _alert_summary(self) -> dict[str, Any]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            firing = [f"{a.rule}[{a.instance}]" if a.instance else a.rule
                      for a in self.store.alerts(self.loaded.tag) if a.state.state == "firing"]
            outbox = self.store.outbox_counts(self.loaded.tag)
        except SQLAlchemyError as exc:
            return {"store": f"unavailable ({type(exc).__name__})"}
        n = self.notifier
        return {"rules": len(self.alerts.rules), "firing": firing, "outbox": outbox,
                "delivered_by_this_worker": n.delivered, "retries_by_this_worker": n.retries,
                "failed_by_this_worker": n.failed, "evaluation_errors": self.alerts.errors}

    def alerts_view(self, limit: int) -> dict[str, Any]:
        return self.alerts.view(limit)

    # -- operator actions (POST /admin/..., token-protected by the middleware) ------------
    def silence(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        rule = body.get("rule")
        if not isinstance(rule, str) or (rule != "*" and rule not in self.alerts.rules):
            return 422, {"error": f"rule must be '*' or one of: {', '.join(self.alerts.rules)}"}
        seconds = body.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= 90 * 86400:
            return 422, {"error": "seconds must be a number in (0, 7776000]"}
        instance = body.get("instance")
        if instance is not None and not (isinstance(instance, str) and len(instance) <= 300):
            return 422, {"error": "instance must be a string of at most 300 characters"}
        now = time.time()
        sid = self.store.add_silence(self.loaded.tag, rule, instance, now + seconds,
                                     _text(body.get("reason"), 1000), _text(body.get("by")), now)
        return 201, {"id": sid, "rule": rule, "instance": instance, "until": now + seconds}

    def unsilence(self, silence_id: int) -> tuple[int, dict[str, Any]]:
        if not 0 <= silence_id < 2 ** 63:
            return 404, {"error": f"no active silence {silence_id}"}
        if self.store.end_silence(self.loaded.tag, silence_id, time.time()):
            return 200, {"id": silence_id, "ended": True}
        return 404, {"error": f"no active silence {silence_id}"}

    def acknowledge(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        rule = body.get("rule")
        if not isinstance(rule, str) or rule not in self.alerts.rules:
            return 422, {"error": f"rule must be one of: {', '.join(self.alerts.rules)}"}
        instance = body.get("instance")
        if instance is not None and not (isinstance(instance, str) and len(instance) <= 300):
            return 422, {"error": "instance must be a string of at most 300 characters"}
        n = self.store.acknowledge(self.loaded.tag, rule, instance or ("" if _single(rule, self.alerts) else None),
                                   _text(body.get("by")), time.time())
        if n == 0:
            return 404, {"error": f"no firing alert for rule {rule}" + (f" [{instance}]" if instance else "")}
        return 200, {"acknowledged": n}

    def rebaseline(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Adopt an evaluated window as the drift reference (every worker picks it up
        within seconds). Performance baselines are unchanged: they need labelled data."""
        wid = body.get("window_id")
        if not isinstance(wid, int) or isinstance(wid, bool) or not 0 <= wid < 2 ** 63:
            return 422, {"error": "window_id must be an integer in [0, 2**63)"}
        from monitoring.store import KEEP_SKETCHES

        sketch, report = self.store.window_sketch(self.loaded.tag, wid)
        if sketch is None:
            return 404, {"error": f"window {wid} is not one of the last {KEEP_SKETCHES} evaluated windows of "
                                  f"{self.loaded.tag}; only those can be adopted"}
        if report is not None and report.get("too_small"):
            return 422, {"error": f"window {wid} has {report.get('rows')} rows, fewer than window_min_rows"}
        version = self.store.adopt_reference(self.loaded.tag, wid, sketch, _text(body.get("by")), time.time())
        self._reference_checked = 0.0
        return 201, {"version": version, "window_id": wid, "rows": sketch.get("rows")}

    def _adopt_reference(self) -> None:
        """On the monitor thread: switch to the newest adopted reference, if it changed."""
        from monitoring.stats.evaluate import WindowEvaluator
        from monitoring.stats.profile import Profile

        now = time.time()
        if now - self._reference_checked < 5.0:
            return
        self._reference_checked = now
        try:
            version = self.store.reference_version(self.loaded.tag)
            if version <= self._reference_version:
                return
            got = self.store.reference(self.loaded.tag, version)
        except Exception as exc:  # store down: try again later
            log.warning("reference check failed: %s", type(exc).__name__)
            return
        if got is None:
            return
        wid, sketch = got
        ref = Profile.from_dict(sketch)
        ref.detector = _recalibrated(self.loaded.profile.detector, ref.multivariate)
        evaluator = WindowEvaluator(self.schema, ref, self.evaluator.config)
        _prepare_in_background(evaluator, SETTINGS.window_rows)  # the new reference's nulls, off the monitor thread
        self.windows.set_reference(ref, evaluator)
        self.evaluator = evaluator
        self.alerts.ctx.reference_rows = ref.rows
        self._reference_version = version
        log.info("adopted window %d of %s as the drift reference (version %d, %d rows)", wid, self.loaded.tag,
                 version, ref.rows)

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        budget = SETTINGS.shutdown_timeout
        start = time.monotonic()
        self.system.stop(timeout=min(1.0, budget / 4))
        self.notifier.stop(timeout=min(1.0, budget / 4))
        if not self.queue.close(timeout=budget / 2):
            log.warning("monitor queue not drained at shutdown: %s", self.queue.stats())
        TELEMETRY.shutdown(timeout=max(0.5, budget - (time.monotonic() - start)))
        self.store.dispose()


def _freeze_startup_heap() -> None:
    """Move what start-up built (BentoML, scikit-learn, the model, the reference; ~260,000
    tracked objects) out of the cyclic garbage collector's way. Objects that outlive a
    request by a little (monitor items waiting for a flush, spans waiting for export) are
    promoted often enough under load to trigger a full collection every second or two, and
    each one walked the whole start-up heap: 150-160 ms pauses, p99 0.16 s on the demo
    model at 600 req/s (34 ms after). Frozen objects are still freed by reference
    counting; only cycles among them are never collected, so collect once first."""
    import gc

    gc.collect()
    gc.freeze()


def _gc_state() -> dict[str, Any]:
    import gc

    return {"frozen_objects": gc.get_freeze_count(),
            "collections": [g["collections"] for g in gc.get_stats()]}


def _prepare_in_background(evaluator, rows: int) -> None:
    """Fill the bootstrap nulls of ``rows``-row windows on a daemon thread (off the request
    path and the monitor thread; the first window would otherwise pay for them). Never raises."""
    import threading

    def work() -> None:
        t, c = time.perf_counter(), time.thread_time()
        try:
            added = evaluator.prepare(rows)
        except Exception:
            log.exception("preparing drift nulls for %d-row windows failed (the first window fills them)", rows)
            return
        log.info("drift nulls for %d-row windows prepared: %d added in %.2f s (%.2f s CPU)", rows, added,
                 time.perf_counter() - t, time.thread_time() - c)

    threading.Thread(target=work, name="vigil-prepare-nulls", daemon=True).start()


def _rules(schema, profile):
    from monitoring.alerts import active_rules

    return active_rules(SETTINGS, schema.task, profile.detector is not None)


def _build_alerts(svc):
    """The alert engine and the notifier of this worker."""
    from monitoring.runtime.alert_engine import AlertEngine
    from monitoring.alerts import TASK_METRICS, RuleContext, check_labels
    from monitoring.runtime.notifier import Notifier, build_sinks

    schema, profile = svc.schema, svc.loaded.profile
    ctx = RuleContext(features=tuple(schema.names), classes=tuple(str(c) for c in schema.classes),
                      metrics=TASK_METRICS[schema.task],
                      reference_rows=profile.rows, drift_alpha=SETTINGS.drift_alpha,
                      error_rate=SETTINGS.alert_error_rate)
    check_labels(svc.rules, ctx)
    ref_stats = {name: (s.mean, s.variance ** 0.5 if s.variance > 0 else 1.0)
                 for name, s in profile.numeric.items() if s.n}
    sinks = build_sinks(list(SETTINGS.alert_webhooks), tracer=svc.tracer, otel_logger=TELEMETRY.logger())
    notifier = Notifier(svc.store, svc.loaded.tag, sinks, svc.worker, metrics=svc.metrics)
    engine = AlertEngine(svc.store, svc.loaded.tag, svc.rules, ctx, sinks=list(sinks), trace_url=SETTINGS.alert_trace_url,
                         baseline=svc.baseline, examples=SETTINGS.alert_examples, metrics=svc.metrics,
                         on_enqueue=notifier.wake, ref_stats=ref_stats)
    return engine, notifier


def _recalibrated(detector, errors):
    """The multivariate detector re-centred on an adopted window's reconstruction errors."""
    if detector is None or errors is None or errors.n < 2:
        return detector
    from monitoring.stats.multivariate import PcaDetector

    return PcaDetector(detector.mean, detector.scale, detector.components, float(errors.mean),
                       float(max(errors.variance, 1e-12)), int(errors.n), detector.error_edges)


def _single(rule: str, engine) -> bool:
    from monitoring.alerts import SERIES

    d = engine.rules.get(rule)
    return d is not None and SERIES[d.rule.series].label is None


def _text(v: Any, limit: int = 200) -> str | None:
    """A free-text field (reason, by), cut to what its column holds."""
    return v[:limit] if isinstance(v, str) else None


def _window_summary(r) -> dict[str, Any]:
    rep = r.report or {}
    return {"window_id": r.window_id, "rows": r.rows, "rows_expected": r.rows_expected,
            "too_small": rep.get("too_small"), "drifted": rep.get("drifted", []),
            "share_drifted": rep.get("share_drifted"), "evaluated_at": r.evaluated_at}


def _current_span():
    from opentelemetry import trace

    return trace.get_current_span()


def _header_error():
    from monitoring.intake.validation import FieldError

    return FieldError(None, "X-Request-ID", N.ERR_MALFORMED,
                      f"X-Request-ID must be 1..{_MAX_CLIENT_ID} printable characters")


MonitoredModel.add_asgi_middleware(VigilMiddleware, runtime=RUNTIME)


async def _store_call(fn, arg):
    """Run a store-backed view or action off the event loop: its result as JSON (an
    action returns (status, body)), or 503 with Retry-After when the store is unavailable."""
    from sqlalchemy.exc import SQLAlchemyError
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    try:
        out = await run_in_threadpool(fn, arg)
    except SQLAlchemyError as exc:
        log.warning("%s: store unavailable (%s)", fn.__name__, type(exc).__name__)
        return JSONResponse({"error": "the store is unavailable; retry later"}, status_code=503,
                            headers={"retry-after": "5"})
    status, body = out if isinstance(out, tuple) else (200, out)
    return JSONResponse(body, status_code=status)


def _monitoring_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from starlette.concurrency import run_in_threadpool

    async def status(request):
        svc = bentoml.get_current_service()
        return JSONResponse(await run_in_threadpool(svc.status))

    def listing(view: str):
        """A GET view over the store's history, newest first, ``?limit=`` 1..1000 (default 20)."""
        async def handler(request):
            try:
                limit = int(request.query_params.get("limit", "20"))
            except ValueError:
                return JSONResponse({"error": "limit must be an integer"}, status_code=422)
            if not 1 <= limit <= 1000:
                return JSONResponse({"error": "limit must be between 1 and 1000"}, status_code=422)
            svc = bentoml.get_current_service()
            return await _store_call(getattr(svc, view), limit)

        return handler

    drift, performance, alerts = listing("drift"), listing("performance"), listing("alerts_view")

    return Starlette(routes=[Route("/status", status, methods=["GET"]), Route("/drift", drift, methods=["GET"]),
                             Route("/performance", performance, methods=["GET"]),
                             Route("/alerts", alerts, methods=["GET"])])


def _admin_app():
    """Operator actions: silence, acknowledge, re-baseline. The middleware requires the
    bearer token (``VIGIL_API_TOKEN``) on every ``/admin`` path."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def action(name: str, with_body: bool = True):
        async def handler(request):
            svc = bentoml.get_current_service()
            if with_body:
                try:
                    body = await request.json()
                except ValueError:
                    return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
                if not isinstance(body, dict):
                    return JSONResponse({"error": "body must be a JSON object"}, status_code=422)
                return await _store_call(getattr(svc, name), body)
            try:
                sid = int(request.path_params["silence_id"])
            except ValueError:
                return JSONResponse({"error": "silence id must be an integer"}, status_code=422)
            return await _store_call(getattr(svc, name), sid)

        return handler

    return Starlette(routes=[Route("/silences", action("silence"), methods=["POST"]),
                             Route("/silences/{silence_id}", action("unsilence", False), methods=["DELETE"]),
                             Route("/alerts/ack", action("acknowledge"), methods=["POST"]),
                             Route("/rebaseline", action("rebaseline"), methods=["POST"])])


MonitoredModel.mount_asgi_app(_monitoring_app(), path="/monitoring", name="monitoring")
MonitoredModel.mount_asgi_app(_admin_app(), path="/admin", name="admin")
