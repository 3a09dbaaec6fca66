"""Evaluates alert rules on every closed window and scored performance window, keeps
their state in the store, and queues notifications in the store's outbox.

Runs on the monitor thread of whichever worker closed the window (windows are evaluated
once, by the worker that claims them) or scored the performance; each evaluation is one
store transaction over the model's alert rows (:meth:`AlertStore.transaction
<monitoring.store.alerts.AlertStore.transaction>`: locked on Postgres, serialised by
SQLite's write lock, run again if another worker created the same row first), so two
workers never advance the same alert twice for the same window. When the store is
unavailable the evaluation is deferred (a bounded few) and applied at the next tick.
Delivery is someone else's job (:mod:`monitoring.runtime.notifier`): nothing here waits
on a sink.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from monitoring import names as N
from monitoring.store import AlertTransaction, StoredAlert, StoreUnavailable
from monitoring.alerts import (SERIES, AlertState, DerivedRule, Obs, RuleContext, RuleSpec, Transition, evaluate_condition,
                     step)
from monitoring.alerts.observers import LATENCY_HISTORY, observe_performance, observe_window
from monitoring.runtime.evidence import alert_figures
from monitoring.values import finite_or_none

log = logging.getLogger("vigil.alerts")

@dataclass(frozen=True)
class AlertOptions:
    """How transitions are announced and evidenced.

    ``sinks``: outbox sink names a transition is queued for (``log``, ``otel``,
    ``webhook:<name>``); ``trace_url``: template turning a trace id into a link, e.g.
    ``http://localhost:16686/trace/{trace_id}``; ``examples``: example trace ids per alert;
    ``ref_stats``: reference (mean, sd) per numeric feature, to pick extreme example rows;
    ``tick_interval``: seconds between repeat/for_seconds checks; ``on_enqueue``: called
    after a commit that queued notifications (the monitor wakes its notifier);
    ``impact_of``: a window id's features ranked by drift impact, for the evidence of
    performance alerts (:mod:`monitoring.stats.impact`)."""

    sinks: tuple[str, ...] = ("log",)
    trace_url: str | None = None
    examples: int = 5
    ref_stats: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    tick_interval: float = 5.0
    on_enqueue: Callable[[], None] | None = None
    impact_of: Callable[[int], Any] | None = None


class AlertEngine:
    """Alert rules of one model, their state in ``store``, notifications through the outbox.

    Parameters
    ----------
    rules : the active rules (defaults merged with configured ones).
    ctx : what the rules are judged against (features, classes, reference rows...).
    options : :class:`AlertOptions`.
    baseline : the performance :class:`~monitoring.stats.performance.Baseline` (estimated-performance bands).
    """

    def __init__(self, store, model: str, rules: list[DerivedRule], ctx: RuleContext,
                 options: AlertOptions = AlertOptions(), *, baseline=None, metrics=None,
                 clock: Callable[[], float] = time.time):
        self.options = options
        self.store = store
        self.model = model
        self.rules = {d.rule.name: d for d in rules}
        self.ctx = ctx
        self.sinks = list(options.sinks)
        self.trace_url = options.trace_url
        self.baseline = baseline
        self.examples = options.examples
        self.metrics = metrics
        self.clock = clock
        self.on_enqueue = options.on_enqueue
        self.tick_interval = options.tick_interval
        self.ref_stats = dict(options.ref_stats)
        self._last_tick = 0.0
        self.errors = 0
        #: completed ticks, and when the last one began: what a check that "nothing more
        #: happened" waits on (a tick begun after an action has seen it), in ``/monitoring/status``
        self.ticks = 0
        self.last_tick_at: float | None = None
        self._retry: deque = deque(maxlen=64)

    # -- inputs ------------------------------------------------------------------------
    def on_window(self, report: Mapping[str, Any]) -> list[tuple[str, str, Transition]]:
        """Advance every window-sourced rule by one closed window. If the store fails, the
        window is kept (a bounded few) and applied again at the next :meth:`tick`."""
        return self._guarded(self._on_window, report)

    def on_performance(self, result: Mapping[str, Any]) -> list[tuple[str, str, Transition]]:
        """Advance every performance-sourced rule by one scored window (each window counts
        once per rule: realized metrics and coverage once final, estimates at first scoring)."""
        return self._guarded(self._on_performance, result)

    def _guarded(self, fn, arg) -> list:
        try:
            return fn(arg)
        except StoreUnavailable as exc:
            self.errors += 1
            log.warning("alert evaluation deferred, store unavailable: %s", exc.reason)
            if self.metrics is not None:
                self.metrics[N.M_MONITOR_ERRORS].add(1)
            self._retry.append((fn, arg))
            return []

    def _on_window(self, report: Mapping[str, Any]) -> list[tuple[str, str, Transition]]:
        wid = int(report["window_id"])
        start = report.get("started_at")
        start = self.clock() if start is None else float(start)
        end = report.get("ended_at")
        end = start if end is None else float(end)
        todo = [d.rule for d in self.rules.values() if SERIES[d.rule.series].source == "window"]
        return self._apply(todo, wid, start, end, lambda r, data: observe_window(r, report, self.ctx, data), report)

    def _on_performance(self, result: Mapping[str, Any]) -> list[tuple[str, str, Transition]]:
        wid = int(result["window_id"])
        now = self.clock()
        todo = [d.rule for d in self.rules.values() if SERIES[d.rule.series].source == "performance"]
        return self._apply(todo, wid, now, now, lambda r, data: observe_performance(r, result, self.baseline),
                           {"window_id": wid, "rows": result.get("predictions"), "performance": True})

    # -- the transaction -----------------------------------------------------------------
    def _apply(self, rules: list[RuleSpec], wid: int, start: float, end: float, observe, report) -> list:
        if not rules:
            return []
        # the store runs this again (rows re-read) if another worker created the same row first
        done, queued = self.store.alerts.transaction(
            self.model, lambda tx: self._apply_in(tx, rules, wid, start, end, observe, report))
        for rule_name, inst, tr in done:
            log.info("alert %s%s %s (window %d)", rule_name, f"[{inst}]" if inst else "", tr.to, wid)
            if self.metrics is not None:
                self.metrics[N.M_ALERT_TRANSITIONS].add(1, rule=rule_name, state=tr.to)
        if queued and self.on_enqueue is not None:
            self.on_enqueue()
        return done

    def _apply_in(self, tx: AlertTransaction, rules, wid, start, end, observe, report) -> tuple[list, int]:
        """One evaluation inside the store's transaction: every rule's state, history and
        outbox rows commit together. Returns (transitions, notifications queued)."""
        now = self.clock()
        done: list[tuple[str, str, Transition]] = []
        queued = 0
        rows = tx.lock()
        silences = tx.silences(now)
        for rule in rules:
            keep_history = SERIES[rule.series].keeps_history
            known = {inst: a for (rn, inst), a in rows.items() if rn == rule.name}
            # latency rules judge a window against the history they keep in their state row
            history = (known[""].data if "" in known else {}) if keep_history else None
            instances = observe(rule, history)
            for inst, obs in instances.items():
                stored = known.get(inst)
                st = stored.state if stored else AlertState()
                if wid <= st.last_window:
                    continue
                abnormal = evaluate_condition(rule, obs)
                new, tr = step(rule, st, abnormal, wid, start, end, now, obs.value)
                data = None
                if keep_history:
                    data = dict(stored.data) if stored else {}
                    if abnormal is not True:
                        hist = [h for h in data.get("history", []) if h[0] != wid]
                        hist.append([wid, (report.get("serving") or {}).get("latency") or {}])
                        data["history"] = hist[-LATENCY_HISTORY:]
                if stored is None and tr is None and new.state == "inactive" and new.bad == 0 and data is None:
                    continue  # nothing to remember about a healthy instance never seen abnormal
                evidence = None
                notified: Any = False
                if tr is not None:
                    evidence = self._evidence(tx, rule, inst, obs, report, tr, now)
                    silenced = _silenced(silences, rule.name, inst)
                    if tr.to == "firing":
                        notify = not silenced
                    else:
                        notify = stored is not None and stored.notified_state == "firing"
                    if notify:
                        queued += tx.enqueue(_key(self.model, rule.name, inst, tr.seq, tr.to), self.sinks,
                                             _payload(tr.to, evidence), now)
                        notified = tr.to
                    tx.add_event(rule.name, inst, tr.seq, tr.to, now, wid, notify,
                                 {"evidence": evidence, "silenced": bool(silenced and tr.to == "firing")})
                    done.append((rule.name, inst, tr))
                tx.save(rule.name, inst, new, rule.severity, now, exists=stored is not None, evidence=evidence,
                        data=data, notified_state=notified, notified_at=now if notified else None,
                        clear_ack=tr is not None and tr.to == "resolved")
        return done, queued

    # -- periodic: silences that ended, repeats, gauges ---------------------------------
    def tick(self, force: bool = False) -> int:
        """Announce firing alerts whose silence ended, repeat unacknowledged ones, and
        refresh the firing gauge. Returns notifications queued. Store errors are counted."""
        now = self.clock()
        if not force and now - self._last_tick < self.tick_interval:
            return 0
        self._last_tick = now
        while self._retry:
            fn, arg = self._retry.popleft()
            try:
                fn(arg)
            except StoreUnavailable:
                self._retry.appendleft((fn, arg))
                break
        try:
            return self._tick(now)
        except StoreUnavailable as exc:
            self.errors += 1
            log.warning("alert tick failed: %s", exc.reason)
            if self.metrics is not None:
                self.metrics[N.M_MONITOR_ERRORS].add(1)
            return 0
        finally:
            self.ticks += 1
            self.last_tick_at = now

    def _tick(self, now: float) -> int:
        firing_by_rule: dict[str, int] = {name: 0 for name in self.rules}
        current = self.store.alerts.all(self.model)
        for a in current:
            if a.state.state == "firing" and a.rule in firing_by_rule:
                firing_by_rule[a.rule] += 1
        if self.metrics is not None:
            for name, n in firing_by_rule.items():
                self.metrics[N.M_ALERTS_FIRING].set(n, rule=name)
        due = [a for a in current if a.state.state == "firing" and a.rule in self.rules and self._due(a, now)]
        if not due:
            return 0
        # one attempt: a tick only updates existing alert rows; losing an outbox key to another
        # worker means that worker announced it, and the next tick looks again
        queued = self.store.alerts.transaction(self.model, lambda tx: self._announce(tx, due, now), attempts=1)
        if queued and self.on_enqueue is not None:
            self.on_enqueue()
        return queued

    def _announce(self, tx: AlertTransaction, due: list[StoredAlert], now: float) -> int:
        """Queue the notifications of ``due`` firing alerts (re-checked under the lock)."""
        queued = 0
        rows = tx.lock()
        silences = tx.silences(now)
        for a in due:
            a = rows.get((a.rule, a.instance))
            if a is None or a.state.state != "firing" or not self._due(a, now) \
                    or _silenced(silences, a.rule, a.instance):
                continue
            rule = self.rules[a.rule].rule
            seq = a.state.seq
            if a.notified_state != "firing":  # a silence ended (or it fired silenced)
                key, kind, repeats = _key(self.model, a.rule, a.instance, seq, "firing"), "firing", 0
            else:
                repeats = a.repeats + 1
                key, kind = _key(self.model, a.rule, a.instance, seq, f"repeat-{repeats}"), "repeat"
            evidence = dict(a.evidence or {})
            evidence["state"] = "firing"
            queued += tx.enqueue(key, self.sinks, _payload(kind, evidence), now)
            tx.save(a.rule, a.instance, a.state, rule.severity, now, exists=True, notified_state="firing",
                    notified_at=now, repeats=repeats)
            tx.add_event(a.rule, a.instance, seq, kind, now, None, True, {"evidence": evidence})
        return queued

    def _due(self, a: StoredAlert, now: float) -> bool:
        if a.notified_state != "firing":
            return True
        rule = self.rules[a.rule].rule
        return (rule.repeat_seconds is not None and a.acked_at is None and a.notified_at is not None
                and now - a.notified_at >= rule.repeat_seconds)

    # -- evidence ------------------------------------------------------------------------
    def _evidence(self, tx: AlertTransaction, rule: RuleSpec, inst: str, obs: Obs, report: Mapping[str, Any],
                  tr: Transition, now: float) -> dict[str, Any]:
        wid = int(report["window_id"])
        try:
            traces = self._traces(tx, rule, inst, report)
        except StoreUnavailable:  # evidence is best effort; the transition is not
            traces = []
        ev = {
            "model": self.model, "rule": rule.name, "instance": inst or None, "state": tr.to, "seq": tr.seq,
            "severity": rule.severity, "series": rule.series, "condition": rule.condition_text(),
            "description": rule.description, "at": now,
            "window": {"id": wid, "started_at": report.get("started_at"), "ended_at": report.get("ended_at"),
                       "rows": report.get("rows")},
            "value": finite_or_none(obs.value), "reference": finite_or_none(obs.reference),
            "threshold": _threshold(rule, obs),
            "observations": obs.n, "trace_ids": traces,
            # what ``value`` is, and the test's own figures and statistics (drift alerts)
            **alert_figures(rule.series, inst or None, report, SERIES[rule.series].description),
        }
        if self.trace_url:
            ev["trace_links"] = [self.trace_url.format(trace_id=t) for t in traces]
        if rule.series.startswith("performance.") and self.options.impact_of is not None:
            try:  # best effort, as the traces
                ev["features_by_impact"] = self.options.impact_of(wid)
            except StoreUnavailable:
                ev["features_by_impact"] = None
        return ev

    def _traces(self, tx: AlertTransaction, rule: RuleSpec, inst: str, report: Mapping[str, Any]) -> list[str]:
        n = self.examples
        sv = report.get("serving") or {}
        if rule.series == "serving.error_rate" and sv.get("failed_traces"):
            return list(sv["failed_traces"])[:n]
        if rule.series.startswith(("serving.", "system.")) and sv.get("slowest_traces"):
            return list(sv["slowest_traces"])[:n]
        wid = int(report["window_id"])
        if rule.series == "performance.realized":
            got = tx.wrong_prediction_traces(wid, n)
            if got:
                return got
        if inst and inst in self.ref_stats and rule.series in ("drift.score", "quality.out_of_range_rate"):
            got = tx.extreme_feature_traces(wid, inst, self.ref_stats[inst], n)
            if got:
                return got
        return tx.window_traces(wid, n)

    # -- views -----------------------------------------------------------------------
    def view(self, limit: int = 50) -> dict[str, Any]:
        now = self.clock()
        current = [a.to_dict() for a in self.store.alerts.all(self.model) if a.state.state != "inactive"]
        for a in current:
            ev = a.get("evidence") or {}
            a["trace_ids"] = ev.get("trace_ids", [])
            if self.trace_url:
                a["trace_links"] = [self.trace_url.format(trace_id=t) for t in a["trace_ids"]]
        return {
            "model": self.model,
            "rules": [{**d.rule.model_dump(exclude_none=True), "condition": d.rule.condition_text(),
                       "derivation": d.derivation} for d in self.rules.values()],
            "firing": [a for a in current if a["state"] == "firing"],
            "alerts": current,
            "recent": self.store.alerts.events(self.model, limit),
            "silences": self.store.alerts.active_silences(self.model, now),
            "outbox": self.store.alerts.outbox_counts(self.model),
            "sinks": self.sinks,
        }


def _silenced(silences: list[dict[str, Any]], rule: str, inst: str) -> bool:
    return any(s["rule"] in (rule, "*") and (s["instance"] is None or s["instance"] == inst) for s in silences)


def _key(model: str, rule: str, inst: str, seq: int, kind: str) -> str:
    return f"{model}/{rule}/{inst or '-'}/{seq}/{kind}"


def _payload(kind: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"status": kind, "alert": evidence}


def _threshold(rule: RuleSpec, obs: Obs) -> Any:
    if rule.above is not None:
        return {"above": rule.above}
    if rule.below is not None:
        return {"below": rule.below}
    if rule.relative_change is not None:
        return {"relative_change": rule.relative_change, "direction": rule.direction, "reference": finite_or_none(obs.reference)}
    return {"band": SERIES[rule.series].band, "bound": obs.bound,
            **({"band_rate": rule.band_rate} if rule.band_rate is not None else {})}

