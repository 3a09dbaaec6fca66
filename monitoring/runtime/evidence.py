"""Drift evidence people can read: the reference's and the window's statistics of every
flagged feature, stored with the window's report; the explicit figures behind an alert's
``value``; and the one-line ``text`` of a notification (what Slack and Teams show).

- :func:`attach_statistics` runs where a window is evaluated (the merged window sketch is at
  hand there and nowhere later): each *flagged* feature of the report gets
  ``"statistics": {"reference": ..., "window": ...}`` (mean, sd, quantiles for numeric
  features; top categories and shares for categorical ones; see
  :mod:`monitoring.stats.describe`). Only flagged features: a 50-feature report stays the
  size it was, and a flagged feature is the one a reader asks "moved how?" about.
- :func:`alert_figures` is what an alert's evidence adds beside ``value``: what ``value``
  means (``value_is``), and for drift alerts the test's ``score``, ``p_value``,
  ``p_holm``, ``statistic``, ``effect``, ``method`` and the statistics above.
- :func:`alert_text` turns a notification payload into
  ``[FIRING] feature_drift on model fraud:3: feature amount drifted (score 4.2; p=1e-09;
  effect 0.42; mean 50.1 -> 72.3, median 41 -> 60.2); also drifted: region - window 12
  (1000 rows) - <link>``.

Pure functions over JSON-ready dicts; nothing here raises on a report missing parts (older
stored reports have no statistics: the evidence then has none).
"""

from __future__ import annotations

from typing import Any, Mapping

from monitoring.schema import ModelSchema
from monitoring.stats.describe import categorical_summaries, numeric_summary
from monitoring.stats.profile import Profile

#: What an alert's ``value`` is, per series (the series' own description otherwise).
VALUE_IS = {"drift.score": "score", "drift.multivariate": "score", "drift.share": "share of features flagged",
            "prediction.drift": "p_value"}
_DRIFT_KEYS = ("method", "statistic", "p_value", "p_holm", "effect", "score", "flagged")


def feature_statistics(reference: Profile, window: Profile, schema: ModelSchema, name: str) -> dict[str, Any] | None:
    """``{"reference": {...}, "window": {...}}`` for feature ``name`` (None if unknown)."""
    if name in reference.numeric and name in window.numeric:
        return {"reference": numeric_summary(reference.numeric[name]), "window": numeric_summary(window.numeric[name])}
    if name in reference.categorical and name in window.categorical:
        spec = next((f for f in schema.categorical if f.name == name), None)
        if spec is None:
            return None
        ref, win = categorical_summaries(reference.categorical[name], window.categorical[name], spec.categories)
        return {"reference": ref, "window": win}
    return None


def attach_statistics(report: dict[str, Any], reference: Profile, window: Profile, schema: ModelSchema) -> None:
    """Add ``statistics`` to every flagged feature of ``report`` (a report's dict form), in place."""
    for f in report.get("features") or ():
        if f.get("flagged"):
            stats = feature_statistics(reference, window, schema, f.get("feature"))
            if stats is not None:
                f["statistics"] = stats


def alert_figures(series: str, instance: str | None, report: Mapping[str, Any], description: str) -> dict[str, Any]:
    """The explicit figures an alert's evidence carries beside ``value`` (see the module docstring)."""
    out: dict[str, Any] = {"value_is": VALUE_IS.get(series, description)}
    entry: Mapping[str, Any] | None = None
    if series == "drift.score":
        entry = next((f for f in report.get("features") or () if f.get("feature") == instance), None)
    elif series == "drift.multivariate":
        entry = report.get("multivariate")
    elif series == "prediction.drift":
        entry = report.get("predictions")
    if entry:
        out.update({k: entry[k] for k in _DRIFT_KEYS if k in entry})
        if entry.get("statistics"):
            out["statistics"] = entry["statistics"]
    if series.startswith("drift."):
        out["drifted"] = list(report.get("drifted") or [f.get("feature") for f in report.get("features") or ()
                                                        if f.get("flagged")])
    return out


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _moved(stats: Mapping[str, Any] | None) -> str:
    """``mean 5.1 -> 8.3`` (numeric) or ``top red 40% -> 71%`` (categorical)."""
    if not stats:
        return ""
    ref, win = stats.get("reference") or {}, stats.get("window") or {}
    if "mean" in ref and ref.get("mean") is not None and win.get("mean") is not None:
        return f"mean {_g(ref['mean'])} -> {_g(win['mean'])}, median {_g(ref.get('p50'))} -> {_g(win.get('p50'))}"
    top = win.get("top") or {}
    if top:
        cat = next(iter(top))
        return f"{cat} {100 * (ref.get('top') or {}).get(cat, 0.0):.0f}% -> {100 * top[cat]:.0f}%"
    return ""


def alert_text(payload: Mapping[str, Any], link: str | None = None) -> str:
    """One line for people: status, rule, model, what moved and by how much, the window, a link."""
    a = payload.get("alert") or {}
    status = str(payload.get("status") or a.get("state") or "").upper()
    head = f"[{status}] {a.get('rule')} on model {a.get('model')}"
    inst = a.get("instance")
    series = str(a.get("series") or "")
    if series == "drift.score" and inst:
        what = f"feature {inst} drifted" if status != "RESOLVED" else f"feature {inst} back within the reference"
        figs = [f"score {_g(a['score'])}" if a.get("score") is not None else "",
                f"p={_g(a['p_holm'])}" if a.get("p_holm") is not None else "",
                f"effect {_g(a['effect'])}" if a.get("effect") is not None else "", _moved(a.get("statistics"))]
        figs = [f for f in figs if f]
        what += f" ({'; '.join(figs)})" if figs else ""
        others = [f for f in a.get("drifted") or () if f != inst]
        if others and status != "RESOLVED":
            what += f"; also drifted: {', '.join(others[:10])}" + (" ..." if len(others) > 10 else "")
    else:
        label = f"[{inst}]" if inst else ""
        what = f"{series}{label} {a.get('value_is') or 'value'} {_g(a.get('value'))}"
        if a.get("reference") is not None:
            what += f" (reference {_g(a['reference'])})"
        bound = (a.get("threshold") or {}).get("bound")
        if bound:
            what += f", bound {bound}"
    win = a.get("window") or {}
    where = f" - window {win.get('id')}" + (f" ({win['rows']} rows)" if win.get("rows") is not None else "") \
        if win.get("id") is not None else ""
    link = link or next(iter(a.get("trace_links") or ()), None)
    return f"{head}: {what}{where}" + (f" - {link}" if link else "")
