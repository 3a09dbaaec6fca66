"""Evaluates alert rules on every closed window and scored performance window, keeps
their state in the store, and queues notifications in the store's outbox.

Runs on the monitor thread of whichever worker closed the window (windows are evaluated
once, by the worker that claims them) or scored the performance; each evaluation is one
transaction over the model's alert rows (locked on Postgres, serialised by SQLite's write
lock), so two workers never advance the same alert twice for the same window. Delivery is
someone else's job (:mod:`monitoring.notify`): nothing here waits on a sink.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any, Callable, Mapping

from sqlalchemy import and_, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import names as N
from .alert_store import StoredAlert
from .alert_store import alerts as alerts_table
from .alerts import (SERIES, AlertState, DerivedRule, Obs, RuleContext, RuleSpec, Transition, evaluate_condition,
                     step)
from .serving import ServingSketch, pooled, quantile

log = logging.getLogger("vigil.alerts")

#: A latency baseline needs this many earlier windows and answered requests.
LATENCY_HISTORY = 12
LATENCY_MIN_WINDOWS = 3
LATENCY_MIN_REQUESTS = 200
#: A latency spike also needs at least this share of requests above the baseline p99.
LATENCY_SPIKE_SHARE = 0.05


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if k > 0 else 1.0


def observe_window(rule: RuleSpec, report: Mapping[str, Any], ctx: RuleContext,
                   data: Mapping[str, Any] | None = None) -> dict[str, Obs]:
    """The rule's series in one window report: {instance: observation} ("" for one-value series)."""
    s = rule.series
    rows = int(report.get("rows") or 0)
    rate = rule.band_rate if rule.band_rate is not None else ctx.drift_alpha
    small = bool(report.get("too_small"))
    out: dict[str, Obs] = {}
    if s.startswith("serving.") or s.startswith("system."):
        sv = report.get("serving") or {}
        n = int(sv.get("requests") or 0)
        if s == "serving.error_rate":
            if n:
                k = int(sv["server_errors"])
                p0 = ctx.error_rate
                bound = _upper_count(n, p0, rate)
                out[""] = Obs(k / n, p0, _binom_sf(k, n, p0) <= rate, f"at most {bound} of {n} failures", n)
        elif s.startswith("serving.latency_"):
            q = {"serving.latency_p50": 0.5, "serving.latency_p95": 0.95, "serving.latency_p99": 0.99}[s]
            hist = pooled([sv.get("latency") or {}])
            answered = sum(hist)
            if answered:
                value = quantile(hist, q)
                base_hist = pooled(h for _, h in (data or {}).get("history", []))
                windows = len((data or {}).get("history", []))
                base_total = sum(base_hist)
                ref = quantile(base_hist, q) if base_total else None
                outside, bound = None, None
                if windows >= LATENCY_MIN_WINDOWS and base_total >= LATENCY_MIN_REQUESTS:
                    p99 = quantile(base_hist, 0.99)
                    slow = ServingSketch(latency=hist).count_above(p99)
                    outside = (_binom_sf(slow, answered, 0.01) <= rate and slow >= LATENCY_SPIKE_SHARE * answered)
                    bound = f"{slow} of {answered} requests slower than the recent p99 {p99 * 1000:.3g} ms"
                out[""] = Obs(value, ref, outside, bound, answered)
        elif s == "system.cpu" and sv.get("cpu_cores") is not None:
            out[""] = Obs(float(sv["cpu_cores"]), n=n)
        elif s == "system.memory" and sv.get("memory_bytes") is not None:
            out[""] = Obs(float(sv["memory_bytes"]), n=n)
        return out
    if small:
        return out
    if s == "drift.score":
        for f in report.get("features", []):
            out[f["feature"]] = Obs(f["score"], None, bool(f["flagged"]), "score >= 1", rows)
    elif s == "drift.share":
        out[""] = Obs(report.get("share_drifted"), n=rows)
    elif s == "drift.multivariate":
        mv = report.get("multivariate")
        if mv is not None:
            out[""] = Obs(mv["score"], None, bool(mv["flagged"]), "score >= 1", rows)
    elif s.startswith("quality."):
        key = s.split(".", 1)[1]
        floor = 1.0 / (ctx.reference_rows + 1)
        for qd in report.get("quality", []):
            v = qd.get(key)
            if v is None:
                continue
            p0 = max(qd["reference_missing_rate"], floor) if key == "missing_rate" else floor
            ref = qd["reference_missing_rate"] if key == "missing_rate" else 0.0
            k = int(round(v * rows))
            out[qd["feature"]] = Obs(v, ref, _binom_sf(k, rows, p0) <= rate,
                                     f"at most {_upper_count(rows, p0, rate)} of {rows}", rows)
    elif s.startswith("prediction."):
        p = report.get("predictions")
        if p is None:
            return out
        if s == "prediction.drift":
            out[""] = Obs(p["p_value"], None, bool(p["flagged"]), f"p <= {ctx.drift_alpha:g}", rows)
        elif s == "prediction.class_share" and p.get("class_share"):
            from scipy.stats import binomtest

            for cls, share in p["class_share"].items():
                ref = (p.get("reference_class_share") or {}).get(cls)
                if ref is None:
                    continue
                k = int(round(share * rows))
                pv = binomtest(k, rows, min(max(ref, 1.0 / (ctx.reference_rows + 1)), 1.0)).pvalue if rows else 1.0
                out[cls] = Obs(share, ref, pv <= rate, f"two-sided binomial p <= {rate:.3g}", rows)
        elif s == "prediction.confidence" and p.get("mean_confidence") is not None:
            out[""] = Obs(p["mean_confidence"], p.get("reference_mean_confidence"), n=rows)
        elif s == "prediction.mean" and p.get("mean") is not None:
            out[""] = Obs(p["mean"], p.get("reference_mean"), n=rows)
        elif s == "prediction.variance" and p.get("variance") is not None:
            out[""] = Obs(p["variance"], p.get("reference_variance"), n=rows)
    if rule.label is not None:
        out = {k: v for k, v in out.items() if k == rule.label}
    return out


def _upper_count(n: int, p0: float, rate: float) -> int:
    """The largest count a binomial(n, p0) check at ``rate`` still calls normal."""
    from scipy.stats import binom

    return int(binom.isf(rate, n, p0)) if n else 0


def observe_performance(rule: RuleSpec, result: Mapping[str, Any], baseline=None) -> dict[str, Obs]:
    """The rule's series in one scored performance window (see ``window_performance``)."""
    from .performance import HIGHER_IS_BETTER

    s = rule.series
    final = bool(result.get("final"))
    n_lab = int(result.get("labelled") or 0)
    if s == "label.coverage":
        return {"": Obs(result.get("coverage"), None, None, None, int(result.get("predictions") or 0))} if final else {}
    m = rule.label
    if s == "performance.realized":
        if not final or result.get("status") not in ("ok", "in-sample baseline") or not result.get("realized"):
            return {}
        v = result["realized"].get(m)
        if v is None:
            return {}
        ref = (result.get("baseline") or {}).get(m)
        outside = None
        band = (result.get("band") or {}).get(m)
        if result.get("alerting") and result.get("band_status") and m in result["band_status"]:
            outside = m in (result.get("degraded") or [])
        bound = None if band is None else f"band [{band[0]:.4g}, {band[1]:.4g}] at {n_lab} labels"
        return {m: Obs(v, ref, outside, bound, n_lab)}
    if s == "performance.estimated":
        est = (result.get("estimated") or {}).get(m)
        if not est or est.get("value") is None:
            return {}
        v = est["value"]
        n = int(result.get("predictions") or 0)
        ref, outside, bound = None, None, None
        if baseline is not None and m in baseline.values:
            ref = baseline.values[m]
            if not baseline.in_sample:
                lo, hi = baseline.band(n).get(m, (None, None))
                if lo is not None:
                    outside = v < lo if HIGHER_IS_BETTER[m] else v > hi
                    bound = f"band [{lo:.4g}, {hi:.4g}] at {n} predictions"
        return {m: Obs(v, ref, outside, bound, n)}
    return {}


class AlertEngine:
    """Alert rules of one model, their state in ``store``, notifications to ``sinks``.

    Parameters
    ----------
    rules : the active rules (defaults merged with configured ones).
    sinks : outbox sink names a transition is queued for (``log``, ``otel``, ``webhook:<name>``).
    trace_url : template turning a trace id into a link, e.g.
        ``http://localhost:16686/trace/{trace_id}``.
    baseline : the performance :class:`~monitoring.performance.Baseline` (estimated-performance bands).
    on_enqueue : called after a commit that queued notifications (wakes the notifier).
    """

    def __init__(self, store, model: str, rules: list[DerivedRule], ctx: RuleContext, *, sinks: list[str],
                 trace_url: str | None = None, baseline=None, examples: int = 5, metrics=None,
                 clock: Callable[[], float] = time.time, on_enqueue: Callable[[], None] | None = None,
                 tick_interval: float = 5.0, ref_stats: Mapping[str, tuple[float, float]] | None = None):
        self.store = store
        self.model = model
        self.rules = {d.rule.name: d for d in rules}
        self.ctx = ctx
        self.sinks = list(sinks)
        self.trace_url = trace_url
        self.baseline = baseline
        self.examples = examples
        self.metrics = metrics
        self.clock = clock
        self.on_enqueue = on_enqueue
        self.tick_interval = tick_interval
        self.ref_stats = dict(ref_stats or {})
        self._last_tick = 0.0
        self.errors = 0
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
        except SQLAlchemyError as exc:
            self.errors += 1
            log.warning("alert evaluation deferred, store unavailable: %s", type(exc).__name__)
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
        for attempt in range(3):
            try:
                return self._apply_once(rules, wid, start, end, observe, report)
            except IntegrityError:  # another worker created the same alert row first: read it and redo
                if attempt == 2:
                    raise
        return []

    def _apply_once(self, rules, wid, start, end, observe, report) -> list:
        now = self.clock()
        done: list[tuple[str, str, Transition]] = []
        queued = 0
        with self.store.engine.begin() as c:
            rows = self.store.lock_alerts(c, self.model)
            silences = self.store.active_silences(self.model, now, c)
            for rule in rules:
                keep_history = rule.series.startswith("serving.latency_")
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
                        evidence = self._evidence(c, rule, inst, obs, report, tr, now)
                        silenced = _silenced(silences, rule.name, inst)
                        if tr.to == "firing":
                            notify = not silenced
                        else:
                            notify = stored is not None and stored.notified_state == "firing"
                        if notify:
                            queued += self.store.enqueue(c, self.model, _key(self.model, rule.name, inst, tr.seq, tr.to),
                                                         self.sinks, _payload(tr.to, evidence), now)
                            notified = tr.to
                        self.store.add_event(c, self.model, rule.name, inst, tr.seq, tr.to, now, wid, notify,
                                             {"evidence": evidence, "silenced": bool(silenced and tr.to == "firing")})
                        done.append((rule.name, inst, tr))
                    self.store.save_alert(c, self.model, rule.name, inst, new, rule.severity, now,
                                          exists=stored is not None, evidence=evidence, data=data,
                                          notified_state=notified, notified_at=now if notified else None,
                                          clear_ack=tr is not None and tr.to == "resolved")
        for rule_name, inst, tr in done:
            log.info("alert %s%s %s (window %d)", rule_name, f"[{inst}]" if inst else "", tr.to, wid)
            if self.metrics is not None:
                self.metrics[N.M_ALERT_TRANSITIONS].add(1, rule=rule_name, state=tr.to)
        if queued and self.on_enqueue is not None:
            self.on_enqueue()
        return done

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
            except SQLAlchemyError:
                self._retry.appendleft((fn, arg))
                break
        try:
            return self._tick(now)
        except SQLAlchemyError as exc:
            self.errors += 1
            log.warning("alert tick failed: %s", type(exc).__name__)
            if self.metrics is not None:
                self.metrics[N.M_MONITOR_ERRORS].add(1)
            return 0

    def _tick(self, now: float) -> int:
        queued = 0
        firing_by_rule: dict[str, int] = {name: 0 for name in self.rules}
        current = self.store.alerts(self.model)
        for a in current:
            if a.state.state == "firing" and a.rule in firing_by_rule:
                firing_by_rule[a.rule] += 1
        if self.metrics is not None:
            for name, n in firing_by_rule.items():
                self.metrics[N.M_ALERTS_FIRING].set(n, rule=name)
        due = [a for a in current if a.state.state == "firing" and a.rule in self.rules and self._due(a, now)]
        if not due:
            return 0
        with self.store.engine.begin() as c:
            rows = self.store.lock_alerts(c, self.model)
            silences = self.store.active_silences(self.model, now, c)
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
                queued += self.store.enqueue(c, self.model, key, self.sinks, _payload(kind, evidence), now)
                self.store.save_alert(c, self.model, a.rule, a.instance, a.state, rule.severity, now, exists=True,
                                      notified_state="firing", notified_at=now)
                if repeats:
                    c.execute(update(alerts_table).where(and_(
                        alerts_table.c.model == self.model, alerts_table.c.rule == a.rule,
                        alerts_table.c.instance == a.instance)).values(repeats=repeats))
                self.store.add_event(c, self.model, a.rule, a.instance, seq, kind, now, None, True,
                                     {"evidence": evidence})
        if queued and self.on_enqueue is not None:
            self.on_enqueue()
        return queued

    def _due(self, a: StoredAlert, now: float) -> bool:
        if a.notified_state != "firing":
            return True
        rule = self.rules[a.rule].rule
        return (rule.repeat_seconds is not None and a.acked_at is None and a.notified_at is not None
                and now - a.notified_at >= rule.repeat_seconds)

    # -- evidence ------------------------------------------------------------------------
    def _evidence(self, c, rule: RuleSpec, inst: str, obs: Obs, report: Mapping[str, Any], tr: Transition,
                  now: float) -> dict[str, Any]:
        wid = int(report["window_id"])
        try:
            traces = self._traces(c, rule, inst, report)
        except SQLAlchemyError:  # evidence is best effort; the transition is not
            traces = []
        ev = {
            "model": self.model, "rule": rule.name, "instance": inst or None, "state": tr.to, "seq": tr.seq,
            "severity": rule.severity, "series": rule.series, "condition": rule.condition_text(),
            "description": rule.description, "at": now,
            "window": {"id": wid, "started_at": report.get("started_at"), "ended_at": report.get("ended_at"),
                       "rows": report.get("rows")},
            "value": _f(obs.value), "reference": _f(obs.reference), "threshold": _threshold(rule, obs),
            "observations": obs.n, "trace_ids": traces,
        }
        if self.trace_url:
            ev["trace_links"] = [self.trace_url.format(trace_id=t) for t in traces]
        return ev

    def _traces(self, c, rule: RuleSpec, inst: str, report: Mapping[str, Any]) -> list[str]:
        n = self.examples
        sv = report.get("serving") or {}
        if rule.series == "serving.error_rate" and sv.get("failed_traces"):
            return list(sv["failed_traces"])[:n]
        if rule.series.startswith(("serving.", "system.")) and sv.get("slowest_traces"):
            return list(sv["slowest_traces"])[:n]
        wid = int(report["window_id"])
        if rule.series == "performance.realized":
            got = self.store.wrong_prediction_traces(c, self.model, wid, n)
            if got:
                return got
        if inst and inst in self.ref_stats and rule.series in ("drift.score", "quality.out_of_range_rate"):
            got = self.store.extreme_feature_traces(c, self.model, wid, inst, self.ref_stats[inst], n)
            if got:
                return got
        return self.store.window_traces(c, self.model, wid, n)

    # -- views -----------------------------------------------------------------------
    def view(self, limit: int = 50) -> dict[str, Any]:
        now = self.clock()
        current = [a.to_dict() for a in self.store.alerts(self.model) if a.state.state != "inactive"]
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
            "recent": self.store.alert_events(self.model, limit),
            "silences": self.store.active_silences(self.model, now),
            "outbox": self.store.outbox_counts(self.model),
            "sinks": self.sinks,
        }


def _silenced(silences: list[dict[str, Any]], rule: str, inst: str) -> bool:
    return any(s["rule"] in (rule, "*") and (s["instance"] is None or s["instance"] == inst) for s in silences)


def _key(model: str, rule: str, inst: str, seq: int, kind: str) -> str:
    return f"{model}/{rule}/{inst or '-'}/{seq}/{kind}"


def _payload(kind: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"status": kind, "alert": evidence}


def _f(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _threshold(rule: RuleSpec, obs: Obs) -> Any:
    if rule.above is not None:
        return {"above": rule.above}
    if rule.below is not None:
        return {"below": rule.below}
    if rule.relative_change is not None:
        return {"relative_change": rule.relative_change, "direction": rule.direction, "reference": _f(obs.reference)}
    return {"band": SERIES[rule.series].band, "bound": obs.bound,
            **({"band_rate": rule.band_rate} if rule.band_rate is not None else {})}

