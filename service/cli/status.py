"""``vigil status``: a running server's ``/monitoring/status`` in a few lines (the whole
JSON with ``--json``)."""

from __future__ import annotations

from typing import Any, Optional

from .common import call, iso, json_option, out, print_json, token_option, url_option


def status(url: str = url_option(), token: Optional[str] = token_option(), as_json: bool = json_option()) -> None:
    """What a running server serves and how far its monitoring windows are."""
    data = call("GET", url, "/monitoring/status", token)
    if as_json:
        print_json(data)
        return
    out().print("\n".join(summary(data)))


def summary(data: dict[str, Any]) -> list[str]:
    """The status view as lines a person reads (every key looked up defensively: the view
    grows, and an older server may lack some)."""
    w = data.get("windows") or {}
    baseline = ", ".join(f"{k}={v:.4g}" for k, v in (data.get("baseline") or {}).items()
                         if isinstance(v, (int, float)))
    lines = [f"model     {data.get('model')} ({data.get('task')}, {data.get('features')} features)",
             f"baseline  {'in-sample ' if data.get('in_sample_baseline') else ''}{baseline}",
             f"windows   close after {w.get('window_rows')} rows or {w.get('window_seconds')} s; "
             f"{w.get('rows_counted') or 0:,} rows counted; store {w.get('store')}"]
    if isinstance(data.get("progress"), str):
        lines.append(f"open      {data['progress']}")
    first = w.get("first_signal")
    if isinstance(first, dict) and isinstance(first.get("line"), str):
        lines.append(f"signal    {first['line']}")
    last = w.get("last_closed")
    if isinstance(last, dict):
        drifted = last.get("drifted") or []
        lines.append(f"last      window {last.get('window_id')}: {last.get('rows')} rows, evaluated "
                     f"{iso(last.get('evaluated_at')) or '?'}; drifted: {', '.join(map(str, drifted)) or 'none'}")
    else:
        lines.append("last      no window evaluated yet")
    alerts = data.get("alerts") or {}
    firing = alerts.get("firing") if isinstance(alerts, dict) else None
    if firing is not None:
        lines.append(f"alerts    firing: {', '.join(firing) or 'none'}")
    return lines
