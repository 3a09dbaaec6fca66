"""The JSON views of a :class:`~monitoring.runtime.monitor.ModelMonitor` (``m``): status,
drift and performance history. Store-backed views raise
:class:`~monitoring.store.StoreUnavailable` (the HTTP layer answers 503); ``status`` degrades
its store-backed parts to an ``unavailable`` note instead.
"""

from __future__ import annotations

import os
from typing import Any

from monitoring.store import StoreUnavailable


def status(m) -> dict[str, Any]:
    """This worker's view of the monitor: queue, windows, alerts (store-backed parts
    degrade to an ``unavailable`` note instead of failing)."""
    q = m.queue.stats()
    w = m.windows.state()
    try:
        last = m.store.windows.recent(m.tag, limit=1)
        counted = m.store.windows.counter(f"rows:{m.tag}")
        store = _write_health(m, w)
    except StoreUnavailable as exc:
        last, counted, store = [], None, f"unavailable ({exc.reason})"
    s = m.settings
    return {
        "model": m.tag, "worker_pid": os.getpid(), "task": m.schema.task,
        "features": len(m.schema.features), "in_sample_baseline": m.model.in_sample,
        "baseline": dict(m.model.baseline), "reference_rows": m.model.reference_rows,
        "monitor_queue": {"capacity": q.capacity, "depth": q.depth, "enqueued_rows": q.enqueued_rows,
                          "dropped_rows": q.dropped_rows, "processed_rows": q.processed_rows,
                          "consumer_errors": q.errors, "running": q.running},
        "windows": {"window_rows": s.window_rows, "window_seconds": s.window_seconds,
                    "rows_counted": counted, "store": store,
                    "open_in_this_worker": list(w.open_windows), "pending_rows": w.pending_rows,
                    "buffer_dropped_rows": w.buffered_dropped_rows, "store_errors": w.store_errors,
                    "store_error": w.last_error, "evaluated_by_this_worker": w.evaluated,
                    "last_closed": _window_summary(last[0]) if last else None},
        "alerts": _alert_summary(m),
        "drift_methods": m.evaluator.methods,
        "gpu": m.system.gpus.available,
    }

def _write_health(m, w) -> str:
    """``ok`` unless a writer's last attempt failed: a store that answers reads but refuses
    writes (read-only, full disk, lost lock) is failing, not ok."""
    failing = {"windows": w.last_error, "performance": m.tracker.last_error,
               "feedback": m.committer.last_error}
    failing = {k: v for k, v in failing.items() if v}
    if not failing:
        return "ok"
    return "failing writes (" + "; ".join(f"{k}: {v}" for k, v in failing.items()) + ")"


def _alert_summary(m) -> dict[str, Any]:
    try:
        firing = [f"{a.rule}[{a.instance}]" if a.instance else a.rule
                  for a in m.store.alerts.all(m.tag) if a.state.state == "firing"]
        outbox = m.store.alerts.outbox_counts(m.tag)
    except StoreUnavailable as exc:
        return {"store": f"unavailable ({exc.reason})"}
    n = m.notifier
    return {"rules": len(m.alert_engine.rules), "firing": firing, "outbox": outbox,
            "delivered_by_this_worker": n.delivered, "retries_by_this_worker": n.retries,
            "failed_by_this_worker": n.failed, "evaluation_errors": m.alert_engine.errors}

def drift(m, limit: int) -> dict[str, Any]:
    """The last ``limit`` evaluated windows, newest first."""
    records = m.store.windows.recent(m.tag, limit=limit)
    s = m.settings
    return {"model": m.tag, "reference_rows": m.model.profile.rows, "window_rows": s.window_rows,
            "alpha": s.drift_alpha, "effect_floor": s.drift_effect_floor,
            "windows": [{**(r.report or {}), "evaluated_at": r.evaluated_at} for r in records]}

def performance(m, limit: int) -> dict[str, Any]:
    """Realized and estimated performance of the last ``limit`` scored windows."""
    return {"model": m.tag, "task": m.schema.task, "in_sample_baseline": m.model.in_sample,
            "baseline": m.baseline.values, "window_rows": m.settings.window_rows,
            "outcomes": m.store.outcomes.counts(m.tag),
            "windows": m.store.outcomes.performance_windows(m.tag, limit)}


def _window_summary(r) -> dict[str, Any]:
    rep = r.report or {}
    return {"window_id": r.window_id, "rows": r.rows, "rows_expected": r.rows_expected,
            "too_small": rep.get("too_small"), "drifted": rep.get("drifted", []),
            "share_drifted": rep.get("share_drifted"), "evaluated_at": r.evaluated_at}
