"""``vigil alerts``: list, silence, un-silence, acknowledge, re-baseline, export.

Every command talks to one running server (``--url``) except ``export-prometheus``, which
reads the model store. Text by default (times as ISO-8601 UTC, tables as wide as their
content when piped), the server's JSON with ``--json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .common import (call, duration_option, fail, human_duration, iso, json_option, note, out, print_json,
                     token_option, typer_app, url_option)

app = typer_app("Alerts: list, silence, acknowledge, re-baseline, export as Prometheus rules.")

_BY = typer.Option(None, "--by", metavar="NAME", help="Who does this (kept with the action).")
_INSTANCE = typer.Option(None, "--instance", metavar="LABEL",
                         help="Only this feature, class or metric of the rule (default: all of them).")


@app.command("list")
def alerts_list(url: str = url_option(), token: Optional[str] = token_option(),
                show_rules: bool = typer.Option(False, "--rules", help="Show the active rules and their derivation."),
                as_json: bool = json_option()) -> None:
    """Current alerts, active silences (with the ids unsilence takes) and the outbox."""
    data = call("GET", url, "/monitoring/alerts", token)
    if as_json:
        print_json(data)
        return
    console = out()
    console.print(alerts_table(data))
    if data.get("silences"):
        console.print(silences_table(data["silences"]))
    if show_rules:
        console.print(rules_table(data.get("rules", [])))
    o = data.get("outbox") or {}
    note(f"outbox: {o.get('pending', 0)} pending, {o.get('delivered', 0)} delivered, {o.get('failed', 0)} "
              f"failed; {len(data.get('silences', []))} active silence(s)")


def alerts_table(data: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"alerts of {data.get('model', '?')}")
    for col in ("rule", "instance", "state", "severity", "value", "since", "acknowledged"):
        t.add_column(col)
    for a in data.get("alerts", []):
        t.add_row(a["rule"], a.get("instance") or "", a["state"], a["severity"],
                  "" if a.get("value") is None else f"{a['value']:.4g}", iso(a.get("since")),
                  a.get("acknowledged_by") or "")
    return t


def silences_table(silences: list[dict[str, Any]]):

    return _table("active silences", ("id", "rule", "instance", "until", "by", "reason"),
                  [(str(s["id"]), s["rule"], s.get("instance") or "", iso(s.get("until")), s.get("created_by") or "",
                    s.get("reason") or "") for s in silences])


def rules_table(rules: list[dict[str, Any]]):

    return _table("rules", ("name", "condition", "for_windows", "resolve_windows", "severity", "derivation"),
                  [(r["name"], r["condition"], str(r["for_windows"]), str(r["resolve_windows"]), r["severity"],
                    r["derivation"]) for r in rules])


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]):
    from rich.table import Table

    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*row)
    return t


@app.command()
def silence(rule: str = typer.Argument(..., metavar="RULE", help="Rule name, or '*' for every rule."),
            seconds: float = duration_option("1h", "--seconds", "--for",
                                             help="How long: seconds or 90s, 10m, 2h, 1d."),
            instance: Optional[str] = _INSTANCE,
            reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why (shown with it)."),
            by: Optional[str] = _BY, url: str = url_option(), token: Optional[str] = token_option(),
            as_json: bool = json_option()) -> None:
    """Silence a rule's notifications for a while (alerts are still evaluated and shown)."""
    data = call("POST", url, "/admin/silences", token, {"rule": rule, "seconds": seconds, "instance": instance,
                                                       "reason": reason, "by": by})
    if as_json:
        print_json(data)
        return
    what = rule + (f" [{instance}]" if instance else "")
    out().print(f"silence {data.get('id')}: {what} silenced for {human_duration(seconds)}, until "
                f"{iso(data.get('until'))} (end it early: vigil alerts unsilence {data.get('id')})")


@app.command()
def unsilence(silence_id: int = typer.Argument(..., metavar="ID", help="The silence's id (see vigil alerts list)."),
              url: str = url_option(), token: Optional[str] = token_option(), as_json: bool = json_option()) -> None:
    """End a silence now (a rule still firing is then announced)."""
    data = call("DELETE", url, f"/admin/silences/{silence_id}", token)
    if as_json:
        print_json(data)
        return
    out().print(f"silence {silence_id} ended")


@app.command()
def ack(rule: str = typer.Argument(..., metavar="RULE", help="The firing rule to acknowledge."),
        instance: Optional[str] = _INSTANCE, by: Optional[str] = _BY, url: str = url_option(),
        token: Optional[str] = token_option(), as_json: bool = json_option()) -> None:
    """Acknowledge a firing alert: no repeat notifications until it resolves."""
    data = call("POST", url, "/admin/alerts/ack", token, {"rule": rule, "instance": instance, "by": by})
    if as_json:
        print_json(data)
        return
    n = data.get("acknowledged", 0)
    out().print(f"acknowledged {n} firing alert{'s' if n != 1 else ''} of {rule}"
                + (f" [{instance}]" if instance else "") + (f" as {by}" if by else "")
                + ": no repeats until it resolves")


@app.command()
def rebaseline(window_id: int = typer.Argument(..., metavar="WINDOW_ID",
                                               help="An evaluated window (see /monitoring/drift)."),
               by: Optional[str] = _BY, url: str = url_option(), token: Optional[str] = token_option(),
               as_json: bool = json_option()) -> None:
    """Adopt an evaluated window as the model's drift reference, without a restart."""
    data = call("POST", url, "/admin/rebaseline", token, {"window_id": window_id, "by": by})
    if as_json:
        print_json(data)
        return
    rows = data.get("rows")
    out().print(f"window {window_id} ({'?' if rows is None else f'{rows:,}'} rows) is now reference version "
                f"{data.get('version')}; every worker switches within seconds")


@app.command("export-prometheus")
def export_prometheus(
    tag: Optional[str] = typer.Argument(None, metavar="TAG",
                                        help="Model tag (default: VIGIL_MODEL, else the demo classifier)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="File to write (default: stdout)."),
) -> None:
    """Write a Prometheus alerting-rules file equivalent to the model's active rules."""
    from models.registry import RegistrationError, load
    from monitoring.alerts import active_rules
    from monitoring.alerts.defaults import ModelShape
    from monitoring.alerts.promql import references_from, render
    from monitoring.config import ConfigError
    from monitoring.stats.performance import HIGHER_IS_BETTER
    from service.settings import load_server_settings

    try:
        settings = load_server_settings(model=tag)
        loaded = load(settings.model)
    except (ConfigError, RegistrationError) as exc:
        fail(str(exc))
    # the model's sizes, as the server derives its rules (monitoring.runtime.monitor)
    shape = ModelShape(reference_rows=loaded.profile.rows, validation_rows=loaded.meta.get("n_validation"),
                       features=len(loaded.schema.names), categorical=len(loaded.schema.categorical))
    rules = active_rules(settings, loaded.schema.task, loaded.profile.detector is not None, shape)
    text = render(rules, model=loaded.tag, window_seconds=settings.window_seconds, drift_alpha=settings.drift_alpha,
                  error_rate=settings.alert_error_rate,
                  references=references_from(loaded.profile, loaded.schema, loaded.meta.get("baseline", {})),
                  higher_is_better=HIGHER_IS_BETTER)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        note(f"wrote {output}")
