"""The JSON views of a :class:`~monitoring.runtime.monitor.ModelMonitor` (``m``): status,
drift and performance history, and the dashboard's columnar views (:func:`windows`, one
feature's drill-down :func:`feature`, both read from the worker's condensed
:class:`~monitoring.runtime.history.WindowHistory`). Every view is bounded by a ``limit``
of windows (the HTTP layer caps it), optionally narrowed by ``since``. Store-backed views raise
:class:`~monitoring.store.StoreUnavailable` (the HTTP layer answers 503); ``status`` degrades
its store-backed parts to an ``unavailable`` note instead.

Readability (docs/views.md lists every field): every time field has an ISO-8601 UTC twin
(``ended_at`` + ``ended_at_iso``, :func:`~monitoring.runtime.readable.with_iso`); latency
histograms are keyed by bucket bound (``"<= 14.6 ms"``); ``status``, ``drift`` and
``windows`` lead with a one-line ``summary`` of the newest window and the open window's
``progress`` (rows so far, when it closes).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from monitoring.alerts import SERIES
from monitoring.runtime.history import FIELDS, SERVING
from monitoring.runtime.progress import DRIFT_RULE, first_signal, window_progress
from monitoring.runtime.readable import drift_summary, readable_latency, with_iso
from monitoring.stats.describe import categorical_summaries, numeric_summary
from monitoring.stats.sketches import CategoricalSketch, NumericSketch
from monitoring.store import StoreUnavailable


def status(m) -> dict[str, Any]:
    """This worker's view of the monitor: queue, windows, alerts (store-backed parts
    degrade to an ``unavailable`` note instead of failing)."""
    q = m.queue.stats()
    w = m.windows.state()
    s = m.settings
    try:
        last = m.store.windows.recent(m.tag, limit=1)
        counted = m.store.windows.counter(f"rows:{m.tag}")
        store = _write_health(m, w)
        progress = _progress(m, counted)
        signal = first_signal(progress, last[0].window_id + 1 if last else 0, _drift_windows(m), s.window_min_rows)
    except StoreUnavailable as exc:
        last, counted, store = [], None, f"unavailable ({exc.reason})"
        progress = signal = None
    return with_iso({
        "model": m.tag, "summary": drift_summary(last[0].report if last else None),
        "progress": progress["line"] if progress else None,
        "worker_pid": os.getpid(), "task": m.schema.task,
        "features": len(m.schema.features), "in_sample_baseline": m.model.in_sample,
        "baseline": dict(m.model.baseline), "reference_rows": m.model.reference_rows,
        "drift_reference": m.reference_in_use(),
        "monitor_queue": {"capacity": q.capacity, "depth": q.depth, "enqueued_rows": q.enqueued_rows,
                          "dropped_rows": q.dropped_rows, "processed_rows": q.processed_rows,
                          "consumer_errors": q.errors, "running": q.running},
        "windows": {"window_rows": s.window_rows, "window_seconds": s.window_seconds,
                    "rows_counted": counted, "store": store,
                    "open_in_this_worker": list(w.open_windows), "pending_rows": w.pending_rows,
                    "buffer_dropped_rows": w.buffered_dropped_rows, "store_errors": w.store_errors,
                    "store_error": w.last_error, "evaluated_by_this_worker": w.evaluated,
                    "last_closed": _window_summary(last[0]) if last else None,
                    "open_window": progress, "first_signal": signal},
        "alerts": _alert_summary(m),
        "drift_methods": m.evaluator.methods,
        "gpu": m.system.gpus.available,
    })


def _progress(m, counted: int | None = None) -> dict[str, Any]:
    s = m.settings
    return window_progress(m.store, m.tag, s.window_rows, s.window_seconds, time.time(), counted)


def _lines(m, newest: dict[str, Any] | None) -> dict[str, str]:
    """The open window's ``progress`` line and the ``first_signal`` line (see :func:`status`)."""
    progress = _progress(m)
    evaluated = int(newest["window_id"]) + 1 if newest and newest.get("window_id") is not None else 0
    signal = first_signal(progress, evaluated, _drift_windows(m), m.settings.window_min_rows)
    return {"progress": progress["line"], "first_signal": signal["line"]}


def _drift_windows(m) -> int | None:
    """Consecutive drifted windows the default drift rule needs (None: the rule is off)."""
    engine = getattr(m, "alert_engine", None)  # the dashboard's view tests build ``m`` without alerting
    d = engine.rules.get(DRIFT_RULE) if engine is not None else None
    return d.rule.for_windows if d is not None else None

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
            "failed_by_this_worker": n.failed, "evaluation_errors": m.alert_engine.errors,
            "ticks_by_this_worker": m.alert_engine.ticks, "last_tick_at": m.alert_engine.last_tick_at,
            "notifier_passes_by_this_worker": n.passes, "last_notifier_pass_at": n.last_pass_at}

def drift(m, limit: int, since: float | None = None) -> dict[str, Any]:
    """The last ``limit`` evaluated windows (those ended at or after ``since``), newest first."""
    records = recent(m, limit, since)[::-1]
    s = m.settings
    newest = records[0].report if records else _newest_report(m)  # ``since`` drops old windows, never the newest
    return with_iso({"model": m.tag, "summary": drift_summary(newest), **_lines(m, newest),
                     "reference_rows": m.model.profile.rows,
                     "window_rows": s.window_rows, "alpha": s.drift_alpha, "effect_floor": s.drift_effect_floor,
                     "windows": [_readable_report(r) for r in records]})


def _newest_report(m) -> dict[str, Any] | None:
    last = m.store.windows.recent(m.tag, limit=1)
    return last[0].report if last else None


def _condensed_report(r) -> dict[str, Any]:
    """What :func:`~monitoring.runtime.readable.drift_summary` reads, from a condensed window."""
    return {"window_id": r.window_id, "rows": r.rows, "too_small": r.too_small, "drifted": list(r.drifted),
            "multivariate": {"flagged": r.multivariate[1]}, "predictions": {"flagged": r.predictions["flagged"]}}


def _window_statistics(reference, h: dict, spec) -> dict[str, Any] | None:
    """A window's statistics of one feature from its stored histogram ``h`` (numeric: with
    the stored moments; categorical: top categories beside the reference's)."""
    try:
        if isinstance(reference, NumericSketch):
            return numeric_summary(NumericSketch.from_dict({"edges": reference.edges, **h, **h["moments"]}))
        win = CategoricalSketch.from_dict({"n_categories": reference.n_categories, "counts": h["counts"],
                                           "unseen": h.get("unseen") or 0, "missing": h["missing"]})
        return categorical_summaries(reference, win, spec.categories)[1]
    except (KeyError, TypeError, ValueError):  # a sketch stored by an older version: no statistics
        return None


def _readable_report(r) -> dict[str, Any]:
    """A stored window report as the drift view shows it: latency keyed by bucket bound."""
    rep = dict(r.report or {})
    if isinstance(rep.get("serving"), dict):
        rep["serving"] = {**rep["serving"], "latency": readable_latency(rep["serving"].get("latency"))}
    return {**rep, "evaluated_at": r.evaluated_at}


def alerts(m, limit: int) -> dict[str, Any]:
    """Rules, alert states, silences and the last ``limit`` transitions; each alert says
    what its ``value`` is (``value_is``)."""
    view = m.alert_engine.view(limit)
    rules = m.alert_engine.rules
    for a in view["alerts"] + view["firing"]:
        d = rules.get(a.get("rule"))
        if d is not None and "value_is" not in a:
            a["value_is"] = (a.get("evidence") or {}).get("value_is") or SERIES[d.rule.series].description
    return with_iso(view)

def performance(m, limit: int) -> dict[str, Any]:
    """Realized and estimated performance of the last ``limit`` scored windows."""
    return with_iso({"model": m.tag, "task": m.schema.task, "in_sample_baseline": m.model.in_sample,
                     "baseline": m.baseline.values, "window_rows": m.settings.window_rows,
                     "outcomes": m.store.outcomes.counts(m.tag),
                     "windows": m.store.outcomes.performance_windows(m.tag, limit)})


def _window_summary(r) -> dict[str, Any]:
    rep = r.report or {}
    return {"window_id": r.window_id, "rows": r.rows, "rows_expected": r.rows_expected,
            "too_small": rep.get("too_small"), "drifted": rep.get("drifted", []),
            "share_drifted": rep.get("share_drifted"), "ended_at": _ended(r), "evaluated_at": r.evaluated_at}


# -- the dashboard's views: columnar, oldest first, bounded by ``limit`` (and ``since``) ------------
#: Windows whose histograms :func:`feature` reads from their stored sketches (one read each).
MAX_FEATURE_HISTOGRAMS = 50


def recent(m, limit: int, since: float | None = None) -> list:
    """The newest ``limit`` evaluated windows' stored records, oldest first; with ``since``
    (epoch seconds), only those that ended at or after it (still at most ``limit``)."""
    records = m.store.windows.recent(m.tag, limit=limit)
    if since is not None:
        records = [r for r in records if _ended(r) is not None and _ended(r) >= since]
    return records[::-1]


def _ended(r) -> float | None:
    rep = r.report or {}
    return rep.get("ended_at") or r.ended_at or r.evaluated_at


def _column(matrix: np.ndarray) -> list[list]:
    """Rows of a float matrix as JSON-ready lists (NaN -> None)."""
    return [[None if v != v else v for v in row] for row in matrix.tolist()]


def windows(m, limit: int, since: float | None = None) -> dict[str, Any]:
    """Every panel's per-window figures in columns (what the dashboard plots): serving,
    drift scores and flags as a features x windows matrix, the prediction mix."""
    rows = m.history.recent(limit, since)
    classes = [str(c) for c in m.schema.classes]
    feats = np.stack([r.features for r in rows], axis=1) if rows else np.zeros((len(m.schema.names), 0, len(FIELDS)))
    score, flagged = feats[:, :, FIELDS.index("score")], feats[:, :, FIELDS.index("flagged")]
    cols: dict[str, list] = {
        "id": [r.window_id for r in rows], "started_at": [r.started_at for r in rows],
        "ended_at": [r.ended_at for r in rows], "evaluated_at": [r.evaluated_at for r in rows],
        "rows": [r.rows for r in rows], "rows_expected": [r.rows_expected for r in rows],
        "complete": [r.complete for r in rows], "too_small": [r.too_small for r in rows],
        "share_drifted": [r.share_drifted for r in rows], "drifted": [list(r.drifted) for r in rows],
        "multivariate_score": [r.multivariate[0] for r in rows], "multivariate_flagged": [r.multivariate[1] for r in rows],
        "rejected": [r.rejected for r in rows],
        **{k: [r.serving[k] for r in rows] for k in SERVING},
        **{f"prediction_{k}" if k in ("p_value", "flagged", "mean", "sd") else k: [r.predictions[k] for r in rows]
           for k in ("p_value", "flagged", "mean_confidence", "mean", "sd")},
        "class_share": {c: [r.predictions["class_share"].get(c) for r in rows] for c in classes}}
    reference = next((r.predictions["reference"] for r in reversed(rows) if r.predictions["reference"]), {})
    s = m.settings
    newest = _condensed_report(rows[-1]) if rows else _newest_report(m)
    return with_iso({"model": m.tag, "summary": drift_summary(newest), **_lines(m, newest),
            "task": m.schema.task, "features": list(m.schema.names),
            "kinds": [f.kind for f in m.schema.features], "classes": classes,
            "window_rows": s.window_rows, "window_seconds": s.window_seconds, "alpha": s.drift_alpha,
            "effect_floor": s.drift_effect_floor, "reference_predictions": reference,
            "windows": cols, "drift": {"score": _column(score), "flagged": [
                [None if v != v else int(v) for v in row] for row in flagged.tolist()]}})


def feature(m, name: str, limit: int, histograms: int, since: float | None = None) -> dict[str, Any]:
    """One feature over the last ``limit`` windows: its statistic, p-values, score and quality
    rates per window, and the reference's histogram on the profile's bins beside those of the
    newest ``histograms`` windows (read from their stored sketches; at most
    :data:`MAX_FEATURE_HISTOGRAMS`, and only windows that still keep a sketch)."""
    spec = next(f for f in m.schema.features if f.name == name)
    i = list(m.schema.names).index(name)
    ref = m.evaluator.reference
    rows = m.history.recent(limit, since)
    series: dict[str, list] = {"id": [r.window_id for r in rows], "ended_at": [r.ended_at for r in rows],
                               "rows": [r.rows for r in rows], "method": [r.methods[i] for r in rows]}
    values = np.array([r.features[i] for r in rows]).reshape(len(rows), len(FIELDS))
    for k, key in enumerate(FIELDS):
        col = [None if v != v else v for v in values[:, k].tolist()]
        series[key] = [None if v is None else bool(v) for v in col] if key == "flagged" else col
    kind = "numeric" if name in ref.numeric else "categorical"
    sketch = (ref.numeric if kind == "numeric" else ref.categorical)[name]
    hist = []
    for r in rows[::-1][:max(0, min(histograms, MAX_FEATURE_HISTOGRAMS))]:
        stored = (m.history.histograms(r.window_id) or {}).get(name)
        if stored is not None:
            h = {k: v for k, v in stored.items() if k != "moments"}
            hist.append({"window_id": r.window_id, **h, "statistics": _window_statistics(sketch, stored, spec)})
    reference = {"rows": ref.rows, **sketch.to_dict()}
    if kind == "categorical":
        reference["categories"] = [str(c) for c in spec.categories]
    reference["statistics"] = (numeric_summary(sketch) if kind == "numeric"
                               else categorical_summaries(sketch, sketch, spec.categories)[0])
    return with_iso({"model": m.tag, "feature": name, "kind": kind, "method": m.evaluator.methods.get(name),
                     "alpha": m.settings.drift_alpha, "effect_floor": m.settings.drift_effect_floor,
                     "reference": reference, "windows": series, "histograms": hist[::-1]})
