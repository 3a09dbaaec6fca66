"""The registration report: what ``vigil register`` found, stored and measured, for people
(:func:`report_lines`) and for scripts (:func:`report_dict`).

It shows the task and classes, the data sizes, the baseline, what the capability probes
found, and per feature: its kind (numeric, categorical or boolean), JSON type,
nullability, number of categories, and whether it is tested for drift (id- and date-like
features are not, see :mod:`models.column_roles`). Warnings are listed once, after the
report, each on one line. :func:`show` prints it; it takes the consoles as arguments, so
this module stays free of any terminal library. No I/O of its own.
"""

from __future__ import annotations

from typing import Any

from monitoring.schema import CATEGORICAL, FeatureSpec, float_limit
from monitoring.values import finite_or_none

from .registry import Registered

#: Feature rows shown in the text report; ``--json`` lists every one.
MAX_FEATURE_ROWS = 40
MAX_CLASSES_SHOWN = 20


def _kind(f: FeatureSpec) -> str:
    return "boolean" if f.kind == CATEGORICAL and f.dtype == "bool" else f.kind


def _categories(f: FeatureSpec) -> str:
    if f.kind != CATEGORICAL:
        return "-"
    return f"{len(f.categories):,}" if f.categories or not f.accepts_unseen else "many"


def _note(f: FeatureSpec, role: str | None) -> str:
    notes = []
    if role is not None:
        notes.append(role if f.drift_exempt else f"{role}, kept (--monitor)")
    if f.kind != CATEGORICAL and f.minimum is not None and f.maximum is not None:
        notes.append(f"range {f.minimum:g} to {f.maximum:g}")
    if f.kind == CATEGORICAL and f.accepts_unseen:
        notes.append("takes unseen values")
    return "; ".join(notes)


def _probes(r: Registered) -> str:
    p, schema = r.probes, r.schema
    if p is None or schema is None:
        return "not run"
    parts = [f"{p.float_dtype} arithmetic"]
    if schema.numeric:
        limit = float_limit(p.float_dtype) if p.max_abs is None else p.max_abs
        parts.append(f"numbers up to {limit:.3g} answered" + (f" (the {p.float_dtype} maximum)" if p.max_abs is None
                                                              else ""))
        parts.append("missing numbers " + ("accepted" if p.accepts_nan else "refused (null gets a 422)"))
    if schema.categorical:
        takes = sorted(p.accepts_unseen)
        parts.append("unseen categories accepted for " + (", ".join(takes) if takes else "no feature"))
    if p.predict_from_proba:
        parts.append("labels taken from predict_proba (one model call per request)")
    return "; ".join(parts)


def _classes(classes: tuple) -> str:
    shown = ", ".join(map(str, classes[:MAX_CLASSES_SHOWN]))
    more = f", ... ({len(classes)} in all)" if len(classes) > MAX_CLASSES_SHOWN else ""
    return f"{len(classes)} classes: {shown}{more}"


def report_lines(r: Registered) -> list[str]:
    """The report as text lines (without the warnings, which :func:`show` adds)."""
    schema = r.schema
    lines = [f"registered {r.tag}: {r.task} model ({r.model_type or 'unknown type'})"]
    if schema is not None:
        target = f"target {schema.target!r}"
        lines.append(f"  {target}: {_classes(schema.classes)}" if r.task == "classification" else f"  {target}")
    sample = f" ({r.sample_rows:,} kept as the reference sample)" if r.sample_rows and r.sample_rows < r.n_reference \
        else ""
    val = "no validation data (baseline in-sample)" if r.in_sample else f"{r.n_validation:,} validation rows"
    lines.append(f"  data: {r.n_reference:,} reference rows{sample}; {val}")
    figures = ", ".join(f"{k}={v:.4g}" for k, v in r.baseline.items() if isinstance(v, (int, float)))
    lines.append(f"  baseline ({'in-sample, optimistic' if r.in_sample else 'validation'}): {figures or 'none'}")
    lines.append(f"  probes: {_probes(r)}")
    if schema is None:
        return lines
    exempt = [f.name for f in schema.features if f.drift_exempt]
    lines.append(f"  features ({len(schema.features)}, {len(schema.features) - len(exempt)} tested for drift):")
    rows = [("column", "kind", "type", "nullable", "categories", "drift", "note")]
    for f in schema.features[:MAX_FEATURE_ROWS]:
        rows.append((f.name, _kind(f), f.dtype, "yes" if f.nullable else "no", _categories(f),
                     "no" if f.drift_exempt else "tested", _note(f, r.roles.get(f.name))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        lines.append("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    if len(schema.features) > MAX_FEATURE_ROWS:
        lines.append(f"    ... and {len(schema.features) - MAX_FEATURE_ROWS} more (--json lists every feature)")
    return [line.rstrip() for line in lines]


def _number(v: Any) -> Any:
    return finite_or_none(v) if isinstance(v, float) else v


def report_dict(r: Registered) -> dict[str, Any]:
    """The report as JSON-ready data (``vigil register --json``)."""
    schema, p = r.schema, r.probes
    features = []
    for f in (schema.features if schema is not None else ()):
        features.append({
            "name": f.name, "kind": _kind(f), "dtype": f.dtype, "nullable": f.nullable,
            "categories": len(f.categories) if f.kind == CATEGORICAL else None,
            "accepts_unseen": f.accepts_unseen if f.kind == CATEGORICAL else None,
            "minimum": _number(f.minimum), "maximum": _number(f.maximum),
            "drift_tested": f.drift_exempt is None, "role": r.roles.get(f.name)})
    return {
        "tag": r.tag, "task": r.task, "model_type": r.model_type,
        "target": schema.target if schema is not None else None,
        "classes": list(schema.classes) if schema is not None else [],
        "reference_rows": r.n_reference, "sample_rows": r.sample_rows, "validation_rows": r.n_validation,
        "in_sample": r.in_sample, "baseline": {k: _number(v) for k, v in r.baseline.items()},
        "probes": None if p is None else {"float_dtype": p.float_dtype, "max_abs": p.max_abs,
                                          "accepts_nan": p.accepts_nan, "accepts_unseen": sorted(p.accepts_unseen),
                                          "predict_from_proba": p.predict_from_proba},
        "features": features, "warnings": list(r.warnings),
    }


def show(r: Registered, *, err: Any, out: Any, as_json: bool = False) -> None:
    """Print the report: text on ``err`` and the tag alone on ``out`` (for scripts), or,
    ``as_json``, the JSON report on ``out``. Each warning once, on ``err``."""
    if as_json:
        import json

        out.print(json.dumps(report_dict(r), indent=2), highlight=False, markup=False, soft_wrap=True)
        return
    for line in report_lines(r):
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    for note in r.warnings:
        err.print(f"[yellow]warning:[/] {_escape(note)}", highlight=False, soft_wrap=True)
    out.print(r.tag, highlight=False, markup=False)


def _escape(text: str) -> str:
    """Square brackets in a note are text, not console markup."""
    return text.replace("[", r"\[")
