"""Time to first signal: how far the open monitoring window is, when it closes, and how many
windows the default drift alert needs before it can fire.

A window closes at ``window_rows`` rows or ``window_seconds`` after its first row, whichever
comes first (see :mod:`monitoring.runtime.windows`); both are read from the store, so every
worker and replica reports the same window. The row-based estimate assumes the rate seen so
far in the window continues. Reads two values from the store (the row counter and the open
window's start); raises :class:`~monitoring.store.StoreUnavailable` like any view.
"""

from __future__ import annotations

from typing import Any

from monitoring.runtime.readable import duration, iso

#: A window open for less than this (or a tenth of its length) gives no row-based estimate.
MIN_RATE_SECONDS = 30.0
#: The default rule whose window count :func:`first_signal` reports.
DRIFT_RULE = "feature_drift"


def window_progress(store, tag: str, window_rows: int, window_seconds: float, now: float,
                    counted: int | None = None) -> dict[str, Any]:
    """The open window: ``window_id``, ``rows`` of ``rows_expected``, ``started_at``,
    ``closes_at`` (the earlier of the time limit and, at the current rate, the row limit),
    ``closes_by`` (``rows`` or ``time``), ``rows_per_second`` and a one-line ``line``."""
    counted = store.windows.counter(f"rows:{tag}") if counted is None else counted
    wid = counted // window_rows
    rows = counted - wid * window_rows
    started = store.windows.open_window_started(tag, wid)
    out: dict[str, Any] = {"window_id": wid, "rows": rows, "rows_expected": window_rows, "started_at": started,
                           "closes_by_time_at": None, "closes_at": None, "closes_by": None, "rows_per_second": None}
    if started is None:
        out["line"] = (f"window {wid}: 0/{window_rows} rows; it opens with the next prediction and closes "
                       f"{window_rows} rows or {duration(window_seconds)} later, whichever comes first")
        return out
    by_time = started + window_seconds
    elapsed = max(now - started, 1e-9)
    rate = rows / elapsed if rows else 0.0
    # a rate over the first seconds is one request's burst, not a rate: no row-based estimate yet
    by_rows = started + window_rows / rate if rate > 0 and elapsed >= min(MIN_RATE_SECONDS, window_seconds / 10) \
        else None
    closes, by = (by_rows, "rows") if by_rows is not None and by_rows < by_time else (by_time, "time")
    out.update(closes_by_time_at=by_time, closes_at=closes, closes_by=by,
               rows_per_second=rate if by_rows is not None else None)
    when = iso(closes) or "?"
    line = f"window {wid}: {rows}/{window_rows} rows, closes at {when}"
    line += (f" (at {window_rows} rows, at the current {rate:.3g} rows/s; by {iso(by_time)} at the latest)"
             if by == "rows" else f" ({duration(window_seconds)} after its first row, unless {window_rows} rows "
                                  f"come first)")
    out["line"] = line
    return out


def first_signal(progress: dict[str, Any], evaluated: int, alert_windows: int | None, min_rows: int) -> dict[str, Any]:
    """How long until drift can show: the open window's close gives the first verdict (if it
    reaches ``min_rows`` rows); the default drift alert fires only after ``alert_windows``
    drifted windows in a row. ``evaluated``: windows evaluated so far."""
    wid = progress["window_id"]
    out: dict[str, Any] = {"windows_evaluated": evaluated, "drift_alert_windows": alert_windows,
                           "window_min_rows": min_rows}
    verdict = (f"drift is judged when window {wid} closes" + (f" ({iso(progress['closes_at'])})"
                                                              if progress.get("closes_at") else ""))
    verdict += f"; windows with fewer than {min_rows} rows are too small to judge"
    if alert_windows:
        verdict += (f"; the default {DRIFT_RULE} alert needs {alert_windows} drifted window"
                    f"{'s' if alert_windows != 1 else ''} in a row")
        if evaluated == 0:  # later, the alert's own state says how far it is
            earliest = wid + alert_windows - 1
            verdict += f", so it can fire when window {earliest} closes at the earliest"
            out["alert_possible_from_window"] = earliest
    out["line"] = verdict
    return out
