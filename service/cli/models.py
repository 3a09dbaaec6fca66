"""``vigil models``: what the local model store holds (no server needed).

``list`` shows one line per registered name (its newest version); ``show NAME[:VERSION]``
one version's schema and baseline and every version of the name. ``--json`` prints the
same as JSON (times as epoch seconds and ISO-8601 UTC).
"""

from __future__ import annotations

import typer

from .common import fail, iso, json_option, note, out, print_json, typer_app

app = typer_app("Registered models in the local model store (BENTOML_HOME).")


def _figures(baseline: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in baseline.items() if isinstance(v, (int, float)))


@app.command("list")
def models_list(as_json: bool = json_option()) -> None:
    """Every registered model: newest version, number of versions, task, when, baseline."""
    from rich.table import Table

    from models.catalog import latest_per_name

    rows = latest_per_name()
    if as_json:
        print_json([{**v.to_dict(), "versions": n} for v, n in rows])
        return
    if not rows:
        note("no models registered yet: vigil register MODEL_FILE --reference FILE --target COLUMN "
             "(or vigil demo)")
        return
    t = Table(title="registered models")
    for col in ("name", "latest", "versions", "task", "created", "baseline"):
        t.add_column(col)
    for v, n in rows:
        t.add_row(v.name, v.version, str(n), v.task or "", iso(v.created),
                  ("in-sample " if v.in_sample else "") + _figures(v.baseline))
    out().print(t)


@app.command()
def show(tag: str = typer.Argument(..., metavar="NAME[:VERSION]", help="Model name (latest version) or tag."),
         as_json: bool = json_option()) -> None:
    """One model version: task, classes, features, baseline, and every version of the name."""
    from rich.table import Table

    from models.catalog import details
    from models.registry import RegistrationError

    try:
        d = details(tag)
    except RegistrationError as exc:
        fail(str(exc))
    if as_json:
        print_json(d.to_dict())
        return
    v, meta = d.version, d.meta
    schema = meta.get("schema") or {}
    console = out()
    lines = [f"model     {v.tag}", f"created   {iso(v.created)}", f"task      {v.task or '?'}"]
    if schema.get("classes"):
        lines.append(f"classes   {', '.join(str(c) for c in schema['classes'])}")
    lines += [f"target    {schema.get('target')}",
              f"reference {meta.get('n_reference', '?'):,} rows" if isinstance(meta.get("n_reference"), int)
              else "reference ?",
              f"baseline  {'in-sample (no --validation): performance alerts off' if v.in_sample else ''}"
              f"{'' if v.in_sample else str(meta.get('n_validation', '?')) + ' validation rows'}: "
              f"{_figures(v.baseline)}",
              f"type      {meta.get('model_type', '?')}", f"path      {v.path}"]
    if d.problem:
        lines.append(f"problem   {d.problem}")
    console.print("\n".join(lines))
    features = Table(title=f"{len(schema.get('features', []))} features")
    for col in ("name", "kind", "dtype", "nullable", "range or categories"):
        features.add_column(col)
    for f in schema.get("features", []):
        if f.get("kind") == "numeric":
            lo, hi = f.get("minimum"), f.get("maximum")
            span = "" if lo is None or hi is None else f"{lo:.4g} .. {hi:.4g}"
        else:
            cats = f.get("categories") or []
            span = ", ".join(map(str, cats[:5])) + (f" (+{len(cats) - 5})" if len(cats) > 5 else "")
        features.add_row(f["name"], f.get("kind", ""), f.get("dtype", ""), "yes" if f.get("nullable") else "no", span)
    console.print(features)
    history = Table(title=f"versions of {v.name}")
    for col in ("version", "created", "baseline"):
        history.add_column(col)
    for other in d.versions:
        history.add_row(other.version + (" (shown)" if other.tag == v.tag else ""), iso(other.created),
                        ("in-sample " if other.in_sample else "") + _figures(other.baseline))
    console.print(history)
