"""Delivering alert notifications from the store's outbox to the sinks.

One :class:`Notifier` thread per worker leases due outbox rows, hands each to its sink and
records the result: delivered, retried later with exponential backoff (with jitter), or
given up after the sink's ``max_attempts`` (counted and logged). Nothing here runs on the
request path or the monitor thread, so a sink that hangs or fails delays only other
notifications. A row's lease outlives the sink's timeout; if the worker dies mid-delivery,
another takes the row when the lease ends (delivered at least once; the idempotency key
travels with it so that receivers can drop a repeat).

Sinks: :class:`LogSink` (one JSON line on the ``vigil.alerts`` logger), :class:`OtelSink`
(an OpenTelemetry log record, and a ``vigil.alert`` span with the transition as a span
event, carrying the evidence's trace ids) and :class:`WebhookSink` (JSON POST).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit

import httpx
from opentelemetry._logs import NoOpLogger, SeverityNumber
from opentelemetry.trace import NoOpTracer

from monitoring import names as N
from monitoring.alerts import WebhookSpec
from monitoring.runtime.evidence import alert_text
from monitoring.runtime.readable import with_iso
from monitoring.store import StoreUnavailable

log = logging.getLogger("vigil.alerts")


class DeliveryError(Exception):
    """A sink could not deliver; ``retryable`` False means trying again cannot help."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    kind: str
    max_attempts: int
    lease: float

    def send(self, key: str, payload: Mapping[str, Any]) -> None: ...

    def backoff(self, attempt: int) -> float: ...


class _Local:
    """A sink inside the process: it cannot be down, only misconfigured."""

    max_attempts = 3
    lease = 10.0

    def backoff(self, attempt: int) -> float:
        return 1.0 * 2 ** attempt


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LogSink(_Local):
    kind = "log"

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or log

    def send(self, key: str, payload: Mapping[str, Any]) -> None:
        a = payload.get("alert", {})
        level = logging.INFO if payload.get("status") == "resolved" else _LEVELS.get(a.get("severity"), logging.WARNING)
        self.logger.log(level, json.dumps({"event": "vigil.alert", "status": payload.get("status"),
                                           "idempotency_key": key, **a}, default=str))


class OtelSink(_Local):
    kind = "otel"

    def __init__(self, tracer, logger):
        self.tracer = tracer
        self.logger = logger

    def send(self, key: str, payload: Mapping[str, Any]) -> None:
        a = payload.get("alert", {})
        status = str(payload.get("status"))
        attrs = {N.ATTR_ALERT_RULE: str(a.get("rule")), N.ATTR_ALERT_INSTANCE: str(a.get("instance") or ""),
                 N.ATTR_ALERT_STATUS: status, N.ATTR_ALERT_SEVERITY: str(a.get("severity")),
                 N.ATTR_ALERT_KEY: key, N.ATTR_ALERT_WINDOW: int((a.get("window") or {}).get("id") or -1),
                 N.ATTR_ALERT_TRACES: [str(t) for t in a.get("trace_ids") or []]}
        if a.get("value") is not None:
            attrs[N.ATTR_ALERT_VALUE] = float(a["value"])
        with self.tracer.start_as_current_span(N.SPAN_ALERT, attributes=attrs) as span:
            span.add_event(N.EVENT_ALERT_PREFIX + status, attributes=attrs)
        sev = {"info": SeverityNumber.INFO, "warning": SeverityNumber.WARN,
               "critical": SeverityNumber.ERROR}.get(a.get("severity"), SeverityNumber.WARN)
        self.logger.emit(body=json.dumps({"status": status, **a}, default=str), attributes=attrs,
                         severity_number=SeverityNumber.INFO if status == "resolved" else sev,
                         severity_text=str(a.get("severity")), event_name=N.EVENT_ALERT_PREFIX + status)


class WebhookSink:
    """POST the notification as JSON with the configured headers and an
    ``Idempotency-Key``. 2xx is delivered; 408, 429, 5xx and connection errors are retried;
    other 4xx are permanent (a receiver that refuses the payload will keep refusing it).

    The body carries a one-line ``text`` for people (Slack's and Teams' incoming webhooks
    refuse a body without it), ending with the spec's ``link`` or the first trace link, and
    ISO-8601 twins of its times (``at_iso``); both are written at delivery, so notifications
    queued before an upgrade get them too."""

    kind = "webhook"

    def __init__(self, spec: WebhookSpec, client=None):
        self.spec = spec
        self.max_attempts = spec.max_attempts
        self.lease = spec.timeout + 10.0
        self._client = client or httpx.Client(timeout=spec.timeout, follow_redirects=False)
        self._httpx = httpx

    def backoff(self, attempt: int) -> float:
        return min(self.spec.backoff_max_seconds, self.spec.backoff_seconds * 2 ** attempt)

    def send(self, key: str, payload: Mapping[str, Any]) -> None:
        headers = {"content-type": "application/json", "idempotency-key": key, **self.spec.headers}
        try:
            body = with_iso({"text": alert_text(payload, self.spec.link), "idempotency_key": key, **payload})
            r = self._client.post(self.spec.url, content=json.dumps(body, default=str), headers=headers)
        except self._httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from None
        if 200 <= r.status_code < 300:
            return
        retryable = r.status_code in (408, 429) or r.status_code >= 500
        raise DeliveryError(f"HTTP {r.status_code}: {r.text[:200]}", retryable)

    def close(self) -> None:
        self._client.close()


class Notifier:
    """The per-worker delivery thread. ``wake()`` makes it look at the outbox now."""

    def __init__(self, store, model: str, sinks: Mapping[str, Sink], worker: str, *, metrics=None,
                 poll_interval: float = 1.0, clock: Callable[[], float] = time.time, batch: int = 20):
        self.store = store
        self.model = model
        self.sinks = dict(sinks)
        self.worker = worker
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.clock = clock
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.retries = 0
        self.store_errors = 0
        #: completed passes over the outbox, and when the last one began (``/monitoring/status``)
        self.passes = 0
        self.last_pass_at: float | None = None

    @property
    def lease(self) -> float:
        return max([s.lease for s in self.sinks.values()] + [10.0])

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> "Notifier":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-alert-notifier", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop within ``timeout``; a delivery still running is abandoned (its lease ends
        and another worker, or the next start, delivers the row)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            began = self.clock()
            try:
                busy = self.run_once()
            except Exception:  # never let the delivery thread die
                log.exception("alert delivery pass failed")
                busy = 0
            self.passes += 1
            self.last_pass_at = began
            if not busy:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def run_once(self) -> int:
        """One pass: lease due rows and deliver them. Returns rows handled."""
        now = self.clock()
        try:
            rows = self.store.alerts.claim_outbox(self.model, self.worker, now, self.lease, self.batch)
        except StoreUnavailable as exc:
            self.store_errors += 1
            log.warning("alert outbox unavailable: %s", exc.reason)
            return 0
        for row in rows:
            if self._stop.is_set():
                break
            self._deliver(row)
        return len(rows)

    def _sink(self, name: str) -> Sink | None:
        """The sink ``name``; ``webhook:<n>`` (the name webhooks had before they were named by
        host) is the n-th webhook, so rows queued before an upgrade are still delivered."""
        sink = self.sinks.get(name)
        m = re.fullmatch(r"webhook:(\d+)", name) if sink is None else None
        if m is not None:
            hooks = [s for n, s in self.sinks.items() if n.startswith("webhook:")]
            sink = hooks[int(m.group(1))] if int(m.group(1)) < len(hooks) else None
        return sink

    def _deliver(self, row) -> None:
        sink = self._sink(row.sink)
        kind = row.sink.split(":", 1)[0]
        try:
            if sink is None:
                raise DeliveryError(f"sink {row.sink!r} is not configured in this worker", retryable=False)
            sink.send(row.key, row.payload)
        except Exception as exc:
            retryable = getattr(exc, "retryable", True) and sink is not None
            attempts = row.attempts + 1
            give_up = not retryable or attempts >= (sink.max_attempts if sink is not None else 1)
            delay = 0.0 if give_up else sink.backoff(row.attempts) * random.uniform(0.8, 1.2)
            msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, DeliveryError) else str(exc)
            try:
                self.store.alerts.outbox_retry(row.id, self.clock() + delay, msg, give_up)
            except StoreUnavailable:
                self.store_errors += 1  # the lease runs out and the row is tried again
            if give_up:
                self.failed += 1
                log.error("alert notification %s to %s failed for good after %d attempt(s): %s", row.key, row.sink,
                          attempts, msg)
            else:
                self.retries += 1
                log.warning("alert notification %s to %s failed (attempt %d, retry in %.1fs): %s", row.key,
                            row.sink, attempts, delay, msg)
            if self.metrics is not None:
                self.metrics[N.M_ALERT_NOTIFICATIONS].add(1, sink=kind, result="failed" if give_up else "retry")
            return
        try:
            self.store.alerts.outbox_done(row.id, self.worker, self.clock())
        except StoreUnavailable:
            self.store_errors += 1  # delivered but not recorded: the lease ends, it is sent again
            return
        self.delivered += 1
        if self.metrics is not None:
            self.metrics[N.M_ALERT_NOTIFICATIONS].add(1, sink=kind, result="delivered")


def webhook_name(spec: WebhookSpec, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``webhook:<name>``, or without a name ``webhook:<host>`` (``webhook:hooks.slack.com``,
    with ``:<port>`` when the URL gives one): the host only, never the path or query, which
    carry the tokens of Slack and Teams URLs. A second webhook of the same name gets ``-2``."""
    if spec.name:
        base = f"webhook:{spec.name}"
    else:
        parts = urlsplit(spec.url)
        try:
            port = parts.port
        except ValueError:
            port = None
        base = f"webhook:{parts.hostname or 'unknown'}" + (f":{port}" if port else "")
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def build_sinks(webhooks: list[WebhookSpec], tracer=None, otel_logger=None) -> dict[str, Sink]:
    """Sink name -> sink: ``log``, ``otel`` (when a tracer or logger is given) and one
    webhook per configured webhook, named by :func:`webhook_name`, in configuration order."""
    out: dict[str, Sink] = {"log": LogSink()}
    if tracer is not None or otel_logger is not None:
        out["otel"] = OtelSink(tracer or NoOpTracer(), otel_logger or NoOpLogger("vigil"))
    for spec in webhooks:
        out[webhook_name(spec, set(out))] = WebhookSink(spec)
    return out
