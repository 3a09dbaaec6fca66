"""Alert delivery: the outbox with several workers, a worker that dies mid-delivery, and
webhook receivers that are down, slow or failing."""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
import time
from collections import Counter

import pytest

from monitoring.runtime.alert_engine import AlertEngine, AlertOptions
from monitoring.alerts import DerivedRule, RuleSpec, WebhookSpec
from monitoring.metrics import Metrics
from monitoring.runtime.notifier import LogSink, Notifier, OtelSink, WebhookSink
from monitoring.store import Store
from tests.support.webhook import Receiver
from tests.monitoring.alerts.test_alerts import CTX, Clock, report
from tests.support.backends import BACKENDS, PG

#: A fresh model name for every test (``fresh_model``): the Postgres database is shared.
MODEL = "m:1"


@pytest.fixture(autouse=True)
def fresh_model(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "MODEL", f"m:{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'v.db'}")
    yield s
    s.dispose()


@pytest.fixture(params=BACKENDS)
def any_store(request, tmp_path):
    """SQLite, and Postgres when available (where row leases meet real concurrency)."""
    s = Store(f"sqlite:///{tmp_path / 'v.db'}" if request.param == "sqlite" else PG)
    yield s
    s.dispose()


class Recording:
    kind = "log"
    max_attempts = 3
    lease = 5.0

    def __init__(self, fail_first: int = 0):
        self.got: list[str] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def backoff(self, attempt):
        return 0.0

    def send(self, key, payload):
        with self._lock:
            if self.fail_first:
                self.fail_first -= 1
                raise RuntimeError("sink hiccup")
            self.got.append(key)


def fire(store, clock, sinks=("log",), n_alerts=3) -> AlertEngine:
    """Queue ``n_alerts`` firing notifications (features a, b and the share rule)."""
    rules = [RuleSpec(name="drift", series="drift.score", outside_band=True),
             RuleSpec(name="share", series="drift.share", above=0.4)]
    eng = AlertEngine(store, MODEL, [DerivedRule(r, "t") for r in rules], CTX, AlertOptions(sinks=tuple(sinks)),
                      clock=clock)
    clock.t += 100
    eng.on_window(report(0, flagged=("a", "b")))
    return eng


def test_several_workers_deliver_each_notification_once(any_store):
    store = any_store
    clock = Clock()
    fire(store, clock)
    sink = Recording()
    workers = [Notifier(Store(store.url), MODEL, {"log": sink}, f"w{i}", clock=clock, batch=1) for i in range(3)]
    threads = [threading.Thread(target=lambda w=w: [w.run_once() for _ in range(10)]) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(Counter(sink.got).values()) == [1, 1, 1]
    assert store.alerts.outbox_counts(MODEL) == {"pending": 0, "delivered": 3, "failed": 0}


def test_a_row_held_by_a_dead_worker_is_delivered_after_its_lease(any_store):
    store = any_store
    clock = Clock()
    fire(store, clock, n_alerts=1)
    held = store.alerts.claim_outbox(MODEL, "dead-worker", clock.t, lease=30.0)  # claimed, then the process died
    assert len(held) == 3
    sink = Recording()
    other = Notifier(store, MODEL, {"log": sink}, "w2", clock=clock)
    assert other.run_once() == 0 and sink.got == []           # the lease is live: left alone
    clock.t += 31
    assert other.run_once() == 3
    assert sorted(sink.got) == sorted(r.key for r in held)


def test_a_row_leased_between_another_workers_read_and_its_update_is_not_taken_twice(any_store):
    """The race the lease exists for, made deterministic: worker A has read the due rows;
    before A's UPDATE runs, worker B leases them. A's UPDATE must re-check the lease and take
    nothing (otherwise both deliver every notification)."""
    from sqlalchemy import event

    store = any_store
    clock = Clock()
    fire(store, clock)
    b = Store(store.url)
    engine = store._db.engine  # the store exposes no SQL; the test steps in before A's UPDATE
    taken_by_b: list = []

    def b_claims_first(*_):
        if not taken_by_b:
            taken_by_b.extend(b.alerts.claim_outbox(MODEL, "B", clock.t, lease=30.0))

    # on SQLite A reads through a separate reader engine, so B may run as A's writer
    # connection is checked out (before A's BEGIN IMMEDIATE takes the write lock); on Postgres A reads and writes on one engine, so B runs just
    # before A's UPDATE is sent (row locks come with the UPDATE itself)
    sqlite = store.dialect == "sqlite"
    hook = ("engine_connect", b_claims_first) if sqlite else ("before_cursor_execute", lambda c, cur, stmt, *a: (
        b_claims_first() if stmt.lstrip().upper().startswith("UPDATE") else None))
    event.listen(engine, hook[0], hook[1])
    try:
        taken_by_a = store.alerts.claim_outbox(MODEL, "A", clock.t, lease=30.0)
    finally:
        event.remove(engine, hook[0], hook[1])
        b.dispose()
    assert len(taken_by_b) == 3, "B did not step in between A's read and A's update"
    assert taken_by_a == []


def test_local_sink_failures_are_retried_then_given_up_and_counted(store, tmp_path):
    clock = Clock()
    fire(store, clock)
    sink = Recording(fail_first=2)
    n = Notifier(store, MODEL, {"log": sink}, "w", clock=clock)
    for _ in range(5):
        n.run_once()
    assert len(sink.got) == 3 and n.retries == 2 and n.failed == 0
    assert store.alerts.outbox_counts(MODEL) == {"pending": 0, "delivered": 3, "failed": 0}

    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    fire(other, clock)
    metrics = Metrics(prometheus=False)
    never = Recording(fail_first=100)                     # max_attempts 3
    n2 = Notifier(other, MODEL, {"log": never}, "w", clock=clock, metrics=metrics)
    for _ in range(6):
        n2.run_once()
    assert n2.failed == 3 and n2.retries == 6
    assert other.alerts.outbox_counts(MODEL) == {"pending": 0, "delivered": 0, "failed": 3}
    other.dispose()


def test_a_row_for_an_unknown_sink_fails_at_once(store):
    clock = Clock()
    fire(store, clock, sinks=("webhook:gone",))
    n = Notifier(store, MODEL, {}, "w", clock=clock)
    n.run_once()
    assert store.alerts.outbox_counts(MODEL) == {"pending": 0, "delivered": 0, "failed": 3}
    assert "not configured" in store.alerts.outbox_rows(MODEL)[0]["last_error"]


def webhook_sink(url: str, **kw) -> WebhookSink:
    return WebhookSink(WebhookSpec(url=url, headers={"Authorization": "Bearer s3cret"}, **kw))


def test_webhook_posts_json_with_the_idempotency_key_and_headers(store):
    clock = Clock()
    fire(store, clock, sinks=("webhook:0",))
    with Receiver() as rx:
        n = Notifier(store, MODEL, {"webhook:0": webhook_sink(rx.url)}, "w", clock=clock)
        n.run_once()
        got = rx.received
    assert len(got) == 3
    keys = {r["headers"]["idempotency-key"] for r in got}
    assert keys == {r["body"]["idempotency_key"] for r in got}
    assert all(r["headers"]["authorization"] == "Bearer s3cret" for r in got)
    body = next(r["body"] for r in got if r["body"]["alert"]["rule"] == "share")
    assert body["status"] == "firing"
    assert body["alert"]["value"] == 1.0 and body["alert"]["threshold"] == {"above": 0.4}
    assert body["alert"]["window"]["id"] == 0


def test_webhook_down_is_retried_with_backoff_and_bounded(store):
    clock = Clock()
    fire(store, clock, sinks=("webhook:0",))
    with Receiver() as rx:
        url = rx.url
    sink = webhook_sink(url, max_attempts=3, backoff_seconds=10, timeout=1)   # nobody listens there now
    n = Notifier(store, MODEL, {"webhook:0": sink}, "w", clock=clock, metrics=Metrics(prometheus=False))
    n.run_once()
    assert n.retries == 3 and n.run_once() == 0          # backing off: not due yet
    clock.t += 7
    assert n.run_once() == 0
    clock.t += 6                                          # 10 s (+-20 % jitter) later: due again
    assert n.run_once() == 3
    clock.t += 30
    n.run_once()                                          # third attempt: given up
    assert n.failed == 3
    rows = store.alerts.outbox_rows(MODEL)
    assert all(r["failed"] and r["attempts"] == 3 and "ConnectError" in r["last_error"] for r in rows)


def test_webhook_500_is_retried_until_it_succeeds_4xx_is_not(store):
    clock = Clock()
    fire(store, clock, sinks=("webhook:0",))
    with Receiver(status=500) as rx:
        n = Notifier(store, MODEL, {"webhook:0": webhook_sink(rx.url, backoff_seconds=1)}, "w", clock=clock)
        n.run_once()
        assert n.retries == 3 and n.delivered == 0
        rx.status = 200
        clock.t += 2
        n.run_once()
        assert n.delivered == 3
        assert len(rx.received) == 6
    store2 = Store(store.url.replace("v.db", "v2.db"))
    fire(store2, clock, sinks=("webhook:0",))
    with Receiver(status=400) as rx:
        n = Notifier(store2, MODEL, {"webhook:0": webhook_sink(rx.url)}, "w", clock=clock)
        n.run_once()
    assert n.failed == 3 and store2.alerts.outbox_counts(MODEL)["failed"] == 3
    store2.dispose()


def test_webhook_answers_that_ask_to_come_back_later_are_retried_others_are_permanent():
    """408 (timeout) and 429 (rate limited) are the receiver asking for a later retry, like
    any 5xx; every other 4xx would be refused again."""
    from monitoring.runtime.notifier import DeliveryError

    retryable = {408: True, 429: True, 500: True, 502: True, 503: True,
                 400: False, 401: False, 403: False, 404: False, 409: False, 413: False, 422: False}
    with Receiver() as rx:
        sink = webhook_sink(rx.url)
        got = {}
        for status in retryable:
            rx.status = status
            with pytest.raises(DeliveryError) as e:
                sink.send("key", {"status": "firing"})
            got[status] = e.value.retryable
        rx.status = 200
        sink.send("key", {"status": "firing"})  # delivered: no error
        sink.close()
    assert got == retryable
    assert len(rx.received) == len(retryable) + 1


def test_a_slow_webhook_never_holds_up_the_monitor(store):
    """The receiver takes 10 s; the engine keeps evaluating windows meanwhile and the
    delivery attempt ends at the sink's timeout."""
    clock = Clock()
    eng = fire(store, clock, sinks=("webhook:0",))
    with Receiver(delay=10) as rx:
        n = Notifier(store, MODEL, {"webhook:0": webhook_sink(rx.url, timeout=1.0)}, "w").start()
        assert rx.arrived.wait(10)                        # the notifier is now waiting on the receiver
        t0 = time.monotonic()
        for wid in range(1, 6):
            eng.on_window(report(wid, flagged=()))
        assert time.monotonic() - t0 < 1.0
        deadline = time.monotonic() + 10
        while n.retries < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert n.retries >= 3                             # each attempt timed out after ~1 s, not 10
        assert n.stop(timeout=3.0)


def test_log_sink_writes_one_json_line(caplog):
    caplog.set_level(logging.INFO, logger="vigil.alerts")
    LogSink().send("k1", {"status": "firing", "alert": {"rule": "drift", "severity": "critical", "value": 2.0}})
    (rec,) = caplog.records
    assert rec.levelno == logging.ERROR
    line = json.loads(rec.getMessage())
    assert line == {"event": "vigil.alert", "status": "firing", "idempotency_key": "k1", "rule": "drift",
                    "severity": "critical", "value": 2.0}


def test_otel_sink_emits_a_log_record_and_a_span_event_with_the_trace_ids():
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    traces = ["ab" * 16, "cd" * 16]
    OtelSink(tp.get_tracer("t"), lp.get_logger("t")).send("key-1", {"status": "firing", "alert": {
        "rule": "drift", "instance": "a", "severity": "warning", "value": 3.5, "window": {"id": 7},
        "trace_ids": traces}})
    (span,) = spans.get_finished_spans()
    assert span.name == "vigil.alert"
    (event,) = span.events
    assert event.name == "vigil.alert.firing"
    assert list(event.attributes["vigil.alert.trace_ids"]) == traces
    assert event.attributes["vigil.alert.idempotency_key"] == "key-1"
    (rec,) = logs.get_finished_logs()
    lr = rec.log_record
    assert lr.attributes["vigil.alert.rule"] == "drift" and lr.attributes["vigil.alert.window_id"] == 7
    assert json.loads(lr.body)["value"] == 3.5
    assert lr.severity_text == "warning"


def test_a_webhook_body_carries_one_line_of_text_for_slack_and_teams(store):
    """Slack's and Teams' incoming webhooks refuse a body without ``text``."""
    clock = Clock(1_800_000_000.0)
    fire(store, clock, sinks=("webhook:x",))
    with Receiver() as rx:
        spec = WebhookSpec(url=rx.url, link="https://dash.example.com/dashboard/")
        Notifier(store, MODEL, {"webhook:x": WebhookSink(spec)}, "w", clock=clock).run_once()
        bodies = {(b["alert"]["rule"], b["alert"]["instance"]): b for b in rx.delivered()}
    drift = bodies[("drift", "a")]["text"]
    assert drift.startswith(f"[FIRING] drift on model {MODEL}: feature a drifted (score 5") and "\n" not in drift
    assert "also drifted: b" in drift and "- window 0 (100 rows)" in drift
    assert drift.endswith(" - https://dash.example.com/dashboard/")
    assert bodies[("drift", "a")]["alert"]["at_iso"] == "2027-01-15T08:01:40.000Z"  # 1.8e9 + 100 s
    share = bodies[("share", None)]["text"]
    assert share.startswith(f"[FIRING] share on model {MODEL}: drift.share share of features flagged 1")
    assert "bound" not in share or "above" in share


def test_webhooks_are_named_by_host_never_by_the_path_or_token_in_their_url():
    from monitoring.runtime.notifier import build_sinks

    specs = [WebhookSpec(url="https://hooks.slack.com/services/T000/B000/XXSECRETXX"),
             WebhookSpec(url="https://hooks.slack.com/services/T111/B111/OTHER"),
             WebhookSpec(url="http://127.0.0.1:9000/hook?token=abc"),
             WebhookSpec(url="https://example.org/x", name="ops")]
    names = list(build_sinks(specs))
    assert names == ["log", "webhook:hooks.slack.com", "webhook:hooks.slack.com-2", "webhook:127.0.0.1:9000",
                     "webhook:ops"]
    assert not [n for n in names if any(s in n for s in ("services", "SECRET", "token", "hook?", "/"))]


def test_a_row_queued_for_a_webhook_by_position_before_the_upgrade_is_still_delivered(store):
    clock = Clock()
    fire(store, clock, sinks=("webhook:0",))            # what a worker of the previous version queued
    with Receiver() as rx:
        n = Notifier(store, MODEL, {"log": LogSink(), "webhook:127.0.0.1": webhook_sink(rx.url)}, "w", clock=clock)
        n.run_once()
        assert len(rx.delivered()) == 3 and n.failed == 0
