"""The JSON views of a :class:`~monitoring.runtime.monitor.ModelMonitor` (``m``): status,
drift and performance history, and the dashboard's columnar views (:func:`windows`, one
feature's drill-down :func:`feature`). Every view is bounded by a ``limit`` of windows
(the HTTP layer caps it), optionally narrowed by ``since``. Store-backed views raise
:class:`~monitoring.store.StoreUnavailable` (the HTTP layer answers 503); ``status`` degrades
its store-backed parts to an ``unavailable`` note instead.
"""

from __future__ import annotations

import math
import os
from typing import Any

from monitoring.store import StoreUnavailable


def status(m) -> dict[str, Any]:
    """This worker's view of the monitor: queue, windows, alerts (store-backed parts
    degrade to an ``unavailable`` note instead of failing)."""
    q = m.queue.stats()
    w = m.windows.state()
    try:
        last = m.store.windows(m.tag, limit=1)
        counted = m.store.counter(f"rows:{m.tag}")
        store = "ok"
    except StoreUnavailable as exc:
        last, counted, store = [], None, f"unavailable ({type(exc).__name__})"
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

def _alert_summary(m) -> dict[str, Any]:
    try:
        firing = [f"{a.rule}[{a.instance}]" if a.instance else a.rule
                  for a in m.store.alerts(m.tag) if a.state.state == "firing"]
        outbox = m.store.outbox_counts(m.tag)
    except StoreUnavailable as exc:
        return {"store": f"unavailable ({type(exc).__name__})"}
    n = m.notifier
    return {"rules": len(m.alert_engine.rules), "firing": firing, "outbox": outbox,
            "delivered_by_this_worker": n.delivered, "retries_by_this_worker": n.retries,
            "failed_by_this_worker": n.failed, "evaluation_errors": m.alert_engine.errors}

def drift(m, limit: int, since: float | None = None) -> dict[str, Any]:
    """The last ``limit`` evaluated windows (those ended at or after ``since``), newest first."""
    records = recent(m, limit, since)[::-1]
    s = m.settings
    return {"model": m.tag, "reference_rows": m.model.profile.rows, "window_rows": s.window_rows,
            "alpha": s.drift_alpha, "effect_floor": s.drift_effect_floor,
            "windows": [{**(r.report or {}), "evaluated_at": r.evaluated_at} for r in records]}

def performance(m, limit: int) -> dict[str, Any]:
    """Realized and estimated performance of the last ``limit`` scored windows."""
    return {"model": m.tag, "task": m.schema.task, "in_sample_baseline": m.model.in_sample,
            "baseline": m.baseline.values, "window_rows": m.settings.window_rows,
            "outcomes": m.store.outcome_counts(m.tag),
            "windows": m.store.performance_windows(m.tag, limit)}


def _window_summary(r) -> dict[str, Any]:
    rep = r.report or {}
    return {"window_id": r.window_id, "rows": r.rows, "rows_expected": r.rows_expected,
            "too_small": rep.get("too_small"), "drifted": rep.get("drifted", []),
            "share_drifted": rep.get("share_drifted"), "evaluated_at": r.evaluated_at}


# -- the dashboard's views: columnar, oldest first, bounded by ``limit`` (and ``since``) ------------
#: Windows whose histograms :func:`feature` reads from their stored sketches (one query each).
MAX_FEATURE_HISTOGRAMS = 50
_SERVING = ("requests", "server_errors", "client_errors", "error_rate", "latency_p50", "latency_p95",
            "latency_p99", "cpu_cores", "memory_bytes")


def recent(m, limit: int, since: float | None = None) -> list:
    """The newest ``limit`` evaluated windows, oldest first; with ``since`` (epoch seconds),
    only those that ended at or after it. Bounded by ``limit`` whatever ``since`` says."""
    records = m.store.windows(m.tag, limit=limit)
    if since is not None:
        records = [r for r in records if _ended(r) is not None and _ended(r) >= since]
    return records[::-1]


def _ended(r) -> float | None:
    rep = r.report or {}
    return rep.get("ended_at") or r.ended_at or r.evaluated_at


def windows(m, limit: int, since: float | None = None) -> dict[str, Any]:
    """Every panel's per-window figures in columns (what the dashboard plots): serving,
    drift scores and flags as a features x windows matrix, the prediction mix."""
    records = recent(m, limit, since)
    names = list(m.schema.names)
    row_of = {n: i for i, n in enumerate(names)}
    n_win = len(records)
    score = [[None] * n_win for _ in names]
    flagged = [[None] * n_win for _ in names]
    classes = [str(c) for c in m.schema.classes]
    cols: dict[str, list] = {k: [] for k in (
        "id", "started_at", "ended_at", "evaluated_at", "rows", "rows_expected", "complete", "too_small",
        "share_drifted", "drifted", "multivariate_score", "multivariate_flagged", "rejected", *_SERVING,
        "prediction_p_value", "prediction_flagged", "mean_confidence", "prediction_mean", "prediction_sd")}
    shares: dict[str, list] = {c: [] for c in classes}
    reference: dict[str, Any] = {}
    for j, r in enumerate(records):
        rep = r.report or {}
        for k, v in (("id", r.window_id), ("started_at", rep.get("started_at", r.started_at)),
                     ("ended_at", _ended(r)), ("evaluated_at", r.evaluated_at), ("rows", r.rows),
                     ("rows_expected", r.rows_expected), ("complete", rep.get("complete")),
                     ("too_small", bool(rep.get("too_small"))), ("share_drifted", rep.get("share_drifted")),
                     ("drifted", rep.get("drifted", [])), ("rejected", sum((rep.get("rejected") or {}).values()))):
            cols[k].append(v)
        for f in rep.get("features") or ():
            i = row_of.get(f.get("feature"))
            if i is not None:
                score[i][j], flagged[i][j] = f.get("score"), int(bool(f.get("flagged")))
        mv = rep.get("multivariate") or {}
        cols["multivariate_score"].append(mv.get("score"))
        cols["multivariate_flagged"].append(mv.get("flagged"))
        sv = rep.get("serving") or {}
        for k in _SERVING:  # a latency in the overflow bucket is stored as inf: JSON has no such number
            v = sv.get(k)
            cols[k].append(None if isinstance(v, float) and not math.isfinite(v) else v)
        p = rep.get("predictions") or {}
        cols["prediction_p_value"].append(p.get("p_value"))
        cols["prediction_flagged"].append(p.get("flagged"))
        cols["mean_confidence"].append(p.get("mean_confidence"))
        cols["prediction_mean"].append(p.get("mean"))
        var = p.get("variance")
        cols["prediction_sd"].append(var ** 0.5 if isinstance(var, (int, float)) and var >= 0 else None)
        for c in classes:
            shares[c].append((p.get("class_share") or {}).get(c))
        if p:
            reference = {"class_share": p.get("reference_class_share"),
                         "mean_confidence": p.get("reference_mean_confidence"), "mean": p.get("reference_mean"),
                         "variance": p.get("reference_variance")}
    s = m.settings
    return {"model": m.tag, "task": m.schema.task, "features": names,
            "kinds": [f.kind for f in m.schema.features], "classes": classes,
            "window_rows": s.window_rows, "window_seconds": s.window_seconds, "alpha": s.drift_alpha,
            "effect_floor": s.drift_effect_floor, "reference_predictions": reference,
            "windows": {**cols, "class_share": shares}, "drift": {"score": score, "flagged": flagged}}


def feature(m, name: str, limit: int, histograms: int, since: float | None = None) -> dict[str, Any]:
    """One feature over the last ``limit`` windows: its statistic, p-values, score and quality
    rates per window, and the reference's histogram on the profile's bins beside those of the
    newest ``histograms`` windows (read from their stored sketches; at most
    :data:`MAX_FEATURE_HISTOGRAMS`, and only windows that still keep a sketch)."""
    spec = next(f for f in m.schema.features if f.name == name)
    ref = m.evaluator.reference
    records = recent(m, limit, since)
    series: dict[str, list] = {k: [] for k in (
        "id", "ended_at", "rows", "method", "statistic", "p_value", "p_holm", "effect", "score", "flagged",
        "missing_rate", "reference_missing_rate", "out_of_range_rate", "unseen_rate")}
    for r in records:
        rep = r.report or {}
        d = next((f for f in rep.get("features") or () if f.get("feature") == name), {})
        q = next((f for f in rep.get("quality") or () if f.get("feature") == name), {})
        series["id"].append(r.window_id)
        series["ended_at"].append(_ended(r))
        series["rows"].append(r.rows)
        for k in ("method", "statistic", "p_value", "p_holm", "effect", "score", "flagged"):
            series[k].append(d.get(k))
        for k in ("missing_rate", "reference_missing_rate", "out_of_range_rate", "unseen_rate"):
            series[k].append(q.get(k))
    kind = "numeric" if name in ref.numeric else "categorical"
    hist = []
    for r in records[::-1][:max(0, min(histograms, MAX_FEATURE_HISTOGRAMS))]:
        sketch, _ = m.store.window_sketch(m.tag, r.window_id)
        s = ((sketch or {}).get(kind) or {}).get(name)
        if s is not None:
            hist.append({"window_id": r.window_id, "counts": s["counts"], "missing": s["missing"],
                         "unseen": s.get("unseen"), "n": s.get("n", sum(s["counts"]))})
    r_sketch = (ref.numeric if kind == "numeric" else ref.categorical)[name]
    reference = {"rows": ref.rows, **r_sketch.to_dict()}
    if kind == "categorical":
        reference["categories"] = [str(c) for c in spec.categories]
    return {"model": m.tag, "feature": name, "kind": kind, "method": m.evaluator.methods.get(name),
            "alpha": m.settings.drift_alpha, "effect_floor": m.settings.drift_effect_floor,
            "reference": reference, "windows": series, "histograms": hist[::-1]}
