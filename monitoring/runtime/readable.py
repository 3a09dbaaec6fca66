"""Readable forms for the JSON views: ISO-8601 UTC times beside epoch seconds, latency
bucket labels, and the one-line drift summary.

Additive by rule: :func:`with_iso` adds ``<key>_iso`` beside every time field and never
removes or changes the epoch field (scripts and the dashboard read those). A time field is
``at``, ``since``, ``until`` or a key ending in ``_at`` whose value is a number (or a list
of numbers, in the columnar views) of at least :data:`MIN_EPOCH`: smaller numbers are not
times. Lists are taken to be homogeneous (as every view's are): a list whose first
non-null item is a number or a string is returned as it is. Pure functions.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from monitoring.stats.serving import LATENCY_BOUNDS
from monitoring.values import finite_or_none

#: 2001-09-09: a time field holding less is a duration or a count, not a time.
MIN_EPOCH = 1e9
_TIME_KEYS = ("at", "since", "until")


def iso(t: Any) -> str | None:
    """``2026-12-05T05:45:48.123Z`` for epoch seconds; None for anything else."""
    t = finite_or_none(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
    if t is None or t < MIN_EPOCH:
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_iso(obj: Any) -> Any:
    """``obj`` (JSON-ready) with ``<key>_iso`` added beside every time field, recursively."""
    if isinstance(obj, list):
        # the views' lists are homogeneous: one of numbers or strings (a column, a matrix row)
        # holds no time field, and skipping it keeps a 500-window view as fast as before
        first = next((v for v in obj if v is not None), None)
        return [with_iso(v) for v in obj] if isinstance(first, (list, dict)) else obj
    if type(obj) is not dict:  # JSON objects are dicts (and a typing.Mapping check is 10x slower)
        return obj
    out: dict[str, Any] = {}
    for k, v in obj.items():
        kind = type(v)
        out[k] = with_iso(v) if kind is dict or kind is list else v  # leaves are most of a view
        if type(k) is not str or not (k in _TIME_KEYS or k.endswith("_at")) or f"{k}_iso" in obj:
            continue
        if kind is list:
            if v and all(x is None or isinstance(x, (int, float)) for x in v) and any(iso(x) for x in v):
                out[f"{k}_iso"] = [iso(x) for x in v]
        elif iso(v) is not None:
            out[f"{k}_iso"] = iso(v)
    return out


def duration(seconds: float) -> str:
    """``4.3 ms``, ``1.2 s``, ``3 min``, ``2.5 h``."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def latency_label(bucket: int) -> str:
    """The readable key of latency bucket ``bucket``: ``<= 14.6 ms`` (its upper bound), the
    overflow bucket ``> 150 s``."""
    if bucket < len(LATENCY_BOUNDS):
        return f"<= {duration(LATENCY_BOUNDS[bucket])}"
    return f"> {duration(LATENCY_BOUNDS[-1])}"


def readable_latency(sparse: Mapping[str, int] | None) -> dict[str, int]:
    """A stored latency histogram (``{"44": 3}``, bucket index -> count) keyed by label,
    fastest bucket first."""
    items = sorted(((int(k), int(v)) for k, v in (sparse or {}).items()), key=lambda kv: kv[0])
    return {latency_label(i): c for i, c in items}


def drift_summary(report: Mapping[str, Any] | None) -> str:
    """One line on the newest evaluated window: ``drifted in the last window (12): alcohol,
    region`` / ``no drift in the last window (12)``."""
    if not report:
        return "no window evaluated yet"
    wid = report.get("window_id")
    if report.get("too_small"):
        return f"the last window ({wid}) had {report.get('rows')} rows, too few to judge drift"
    drifted = list(report.get("drifted") or [])
    extra = []
    if (report.get("multivariate") or {}).get("flagged"):
        extra.append("the joint distribution moved (multivariate)")
    if (report.get("predictions") or {}).get("flagged"):
        extra.append("the prediction distribution moved")
    if drifted:
        line = f"drifted in the last window ({wid}): {', '.join(drifted)}"
    else:
        line = f"no drift in the last window ({wid})" if not extra else f"no feature drifted in the last window ({wid})"
    return line + ("; " + "; ".join(extra) if extra else "")
