"""The BentoML service: an HTTP adapter over :class:`~monitoring.runtime.monitor.ModelMonitor`.

Serve with ``bentoml serve service:MonitoredModel`` (or ``vigil serve``). The model is
``VIGIL_MODEL`` (default: the demo classifier). Its stored schema is read at import so
that the OpenAPI spec at ``/docs.json`` describes the real features.

What lives here: request parsing and responses, spans (one server span from BentoML, three
recorded children from :mod:`service.telemetry`), dispatch (event loop or thread pool,
:mod:`service.inline`), the middleware (token, body limit, request metrics) and the mounted
``/monitoring`` and ``/admin`` apps (:mod:`service.mounts`), and the dashboard page at
``/dashboard/`` (:mod:`service.dashboard`). Everything the monitor does
(windows, drift, performance, alerts, the store) is behind ``self.monitor``; nothing here
touches SQL, and the monitor never calls back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Annotated, Any

import anyio
import anyio.to_thread
import bentoml
from opentelemetry import trace
from pydantic import WithJsonSchema
from starlette.responses import JSONResponse

from models.adapters import ModelAdapter, jsonable_labels
from models.insight import read_dle, read_importance
from models.registry import load, load_validation, read_schema, validation_rows
from monitoring import names as N
from monitoring.intake.outcomes import FeedbackInvalid, conflict_errors, parse_outcomes
from monitoring.intake.validation import FieldError, ValidationFailed, Validator
from monitoring.runtime.monitor import ModelInfo, ModelMonitor, TelemetryHandles
from monitoring.runtime.queue import MonitorItem
from monitoring.store import OutcomeConflict, StoreUnavailable

from . import bentoml_fixes, connections, routes, telemetry
from .dashboard import DocsLink, SampleRows, dashboard_app
from .inline import InlinePolicy
from .middleware import SCOPE_COUNTED, SCOPE_TRUSTED, MonitorRef, VigilMiddleware
from .mounts import admin_app, monitoring_app
from .openapi import merge as merge_openapi
from .process import freeze_startup_heap, gc_state
from .schemas import (ALLOW_EARLY, MAX_CLIENT_ID, MAX_LISTED, FeedbackResponse, PredictResponse, instances_schema,
                      outcomes_schema)
from .settings import load_server_settings
from .spans import ChildSpans

log = logging.getLogger("vigil.service")

SETTINGS = load_server_settings()
SCHEMA = read_schema(SETTINGS.model)
# Before BentoML builds its ASGI app: its request timer that never cancels (service/bentoml_fixes.py),
# routes instead of raw paths in its metric labels and span names (service/routes.py), a deadline
# for each request head (service/connections.py), and one tracer provider for its spans and ours.
bentoml_fixes.apply()
routes.apply()
connections.apply(SETTINGS.header_timeout)
TELEMETRY = telemetry.install({"vigil.model": SETTINGS.model}, export_timeout=SETTINGS.otel_export_timeout,
                              keep_asgi_events=SETTINGS.trace_asgi_events)
#: The middleware is built before the service instance exists; it reaches the monitor through this.
MONITOR = MonitorRef()

_INSTANCES_SCHEMA = instances_schema(SCHEMA, SETTINGS.max_batch_rows, SETTINGS.instance_id_field,
                                     ranges=not SETTINGS.protect_monitoring)
_OUTCOMES_SCHEMA = outcomes_schema(SCHEMA, SETTINGS.max_feedback_items)


def _traceparent(span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _json_error(ctx: bentoml.Context, status: int, body: dict[str, Any]) -> JSONResponse:
    ctx.response.status_code = status  # BentoML copies the context's status onto the response
    return JSONResponse(body, status_code=status)


def model_info(loaded, decision_threshold: float | None) -> ModelInfo:
    """What the monitor needs of a loaded registered model."""
    y_true, y_pred, proba = load_validation(loaded)
    if decision_threshold is not None and proba is not None:
        y_pred = (proba[:, 1] >= decision_threshold).astype(int)
    return ModelInfo(tag=loaded.tag, name=loaded.name, version=loaded.version, schema=loaded.schema,
                     profile=loaded.profile, validation=(y_true, y_pred, proba), in_sample=loaded.in_sample,
                     baseline=loaded.meta.get("baseline", {}), reference_rows=loaded.meta.get("n_reference"),
                     importance=read_importance(loaded.path), dle=read_dle(loaded.path))


@bentoml.service(name="vigil", workers=SETTINGS.workers, traffic={"timeout": 60})
class MonitoredModel:
    stored_model = bentoml.models.BentoModel(SETTINGS.model)

    def __init__(self) -> None:
        self.loaded = load(self.stored_model)
        self.schema = self.loaded.schema
        if SETTINGS.decision_threshold is not None:
            self.loaded.adapter = ModelAdapter(self.loaded.adapter.model, self.schema,
                                               decision_threshold=SETTINGS.decision_threshold)
        self.child_spans = ChildSpans(TELEMETRY)
        self.inline = InlinePolicy(SETTINGS.inline_predict_ms / 1000)
        self._limiter: anyio.CapacityLimiter | None = None
        self.validator = Validator(self.schema, SETTINGS.max_batch_rows, SETTINGS.instance_id_field)
        # without a metrics exporter the OTel side would only cost time: Prometheus alone then
        handles = TelemetryHandles(meter=TELEMETRY.meter() if TELEMETRY.metrics_exporting else None,
                                   tracer=TELEMETRY.tracer(), logger=TELEMETRY.logger())
        self.monitor = ModelMonitor(SETTINGS, model_info(self.loaded, SETTINGS.decision_threshold), handles).start()
        self.metrics = self.monitor.metrics
        TELEMETRY.drops.bind(self.metrics)
        self._model_attrs = {N.ATTR_MODEL_NAME: self.loaded.name, N.ATTR_MODEL_VERSION: self.loaded.version}
        self._classes = list(self.schema.classes) if self.schema.task == "classification" else None
        MONITOR.monitor = self.monitor
        loaded = self.loaded
        self.sample = SampleRows(lambda: validation_rows(loaded), self.schema, dict(SETTINGS.privacy))
        freeze_startup_heap()
        if SETTINGS.api_token is None:
            log.warning("VIGIL_API_TOKEN is not set: /feedback is open to anyone, and fake labels would "
                        "poison the performance metrics; /predict and /monitoring are open; /admin is "
                        "disabled. Set a token in production.")
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
            self._limiter = anyio.CapacityLimiter(1)
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
        received = time.time()
        request_id = self.monitor.request_ids.issue(len(instances) if isinstance(instances, list) else 0)
        server_span = trace.get_current_span()
        ctx.response.headers["traceparent"] = _traceparent(server_span)
        ctx.response.headers["x-vigil-request-id"] = request_id
        client_id = ctx.request.headers.get("x-request-id")
        attrs = {**self._model_attrs, N.ATTR_REQUEST_ID: request_id}
        if client_id is not None:
            if not (0 < len(client_id) <= MAX_CLIENT_ID and client_id.isprintable()):
                server_span.set_attributes(attrs)
                return self._reject(ctx, ValidationFailed([FieldError(
                    None, "X-Request-ID", N.ERR_MALFORMED,
                    f"X-Request-ID must be 1..{MAX_CLIENT_ID} printable characters")])), 0
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
        if not ctx.request.scope.get(SCOPE_TRUSTED, True) and (client_id is not None or batch.instance_ids):
            # with a token set, only its holders' own ids are kept for feedback: anyone could
            # otherwise claim a caller id and have the holder's labels join their prediction
            client_id = None
            batch = dataclasses.replace(batch, instance_ids=None)
            ctx.response.headers["x-vigil-caller-ids"] = "not kept: send the bearer token to label by your ids"
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

        accepted = self.monitor.offer(MonitorItem(
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
        allow_early: Annotated[bool, WithJsonSchema({"type": "boolean", "description": ALLOW_EARLY})] = False,
    ) -> FeedbackResponse:
        """Record true outcomes. 2xx means committed; re-sending is safe (duplicates are
        counted, not stored twice); outcomes that name no prediction are reported under
        `unknown`/`errors` and not kept (unless `allow_early`); a batch with an invalid (422)
        or conflicting (409) item is rejected whole; 503 when the store cannot commit
        (nothing stored: retry)."""
        span = trace.get_current_span()
        span.set_attributes(self._model_attrs)
        ctx.response.headers["traceparent"] = _traceparent(span)
        try:
            items = parse_outcomes(outcomes, self.schema, SETTINGS.max_feedback_items, time.time(),
                                   request_ids=self.monitor.request_ids, allow_early=allow_early is True)
            res = self.monitor.submit_outcomes(items, timeout=SETTINGS.store_timeout + 5)
        except FeedbackInvalid as exc:
            return self._feedback_refused(ctx, span, exc.status, exc.to_dict(), "rejected",
                                          N.ERR_MALFORMED if exc.status == 422 else N.ERR_TOO_MANY_ROWS)
        except OutcomeConflict as exc:
            return self._feedback_refused(ctx, span, 409, conflict_errors(exc.conflicts).to_dict(), "conflict")
        except (StoreUnavailable, TimeoutError) as exc:
            self.metrics[N.M_FEEDBACK_OUTCOMES].add(1, result="unavailable")
            span.set_attributes({N.ATTR_OUTCOME: N.OUTCOME_SERVER_ERROR, N.ATTR_ERROR_TYPE: type(exc).__name__})
            log.warning("feedback not stored: store unavailable (%s)", type(exc).__name__)
            ctx.response.headers["retry-after"] = "5"
            return _json_error(ctx, 503, {"error": "the outcome store is unavailable; nothing was stored, retry later"})
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.accepted - res.pending, result="accepted")
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.pending, result="pending")
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.duplicate, result="duplicate")
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(len(res.unknown), result="unknown")
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(res.replaced, result="replaced")
        self.metrics[N.M_REQUEST_ROWS].record(len(items), endpoint="feedback")
        span.set_attributes({N.ATTR_ROWS: len(items), N.ATTR_OUTCOME: N.OUTCOME_OK})
        return FeedbackResponse(accepted=res.accepted, duplicate=res.duplicate, pending=res.pending,
                                unknown=len(res.unknown), replaced=res.replaced,
                                errors=[{"item": pos, "message": msg} for pos, msg in res.unknown[:MAX_LISTED]])

    def _feedback_refused(self, ctx, span, status: int, body: dict, result: str, kind: str | None = None):
        ctx.request.scope[SCOPE_COUNTED] = True
        self.metrics[N.M_FEEDBACK_OUTCOMES].add(1, result=result)
        if kind is not None:
            self.metrics[N.M_VALIDATION_ERRORS].add(1, kind=kind)
        span.set_attribute(N.ATTR_OUTCOME, N.OUTCOME_CLIENT_ERROR)
        return _json_error(ctx, status, body)

    def _reject(self, ctx: bentoml.Context, exc: ValidationFailed) -> Any:
        ctx.request.scope[SCOPE_COUNTED] = True
        self.metrics[N.M_VALIDATION_ERRORS].add(1, kind=exc.kind)
        self.monitor.note_rejection(exc.kind)
        trace.get_current_span().set_attribute(N.ATTR_OUTCOME, N.OUTCOME_CLIENT_ERROR)
        return _json_error(ctx, exc.status, exc.to_dict())

    def status(self) -> dict[str, Any]:
        """The monitor's status plus this worker's serving state (dispatch, GC, telemetry)."""
        return {**self.monitor.status(), "worker_pid": os.getpid(), "predict_dispatch": self.inline.state(),
                "gc": gc_state(),
                "telemetry": {"traces_exporting": TELEMETRY.traces_exporting,
                              "metrics_exporting": TELEMETRY.metrics_exporting,
                              "dropped": dict(TELEMETRY.drops.counts),
                              "spans_ended": TELEMETRY.drops.spans_ended}}

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        budget = SETTINGS.shutdown_timeout
        start = time.monotonic()
        self.monitor.close(budget)
        TELEMETRY.shutdown(timeout=max(0.5, budget - (time.monotonic() - start)))


MonitoredModel.add_asgi_middleware(VigilMiddleware, settings=SETTINGS, monitor=MONITOR)
MonitoredModel.add_asgi_middleware(DocsLink, extend=merge_openapi)
MonitoredModel.mount_asgi_app(monitoring_app(bentoml.get_current_service), path="/monitoring", name="monitoring")
MonitoredModel.mount_asgi_app(admin_app(bentoml.get_current_service), path="/admin", name="admin")
MonitoredModel.mount_asgi_app(dashboard_app(), path="/dashboard", name="dashboard")
