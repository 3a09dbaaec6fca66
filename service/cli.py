"""The ``vigil`` command line: register models, create the demo models, serve, simulate traffic, alerts."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Vigil: serve any model with tracing, metrics and monitoring built in.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


@app.command()
def register(
    model_file: Path = typer.Argument(..., help="joblib/pickle file holding a fitted estimator, pipeline or callable."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference data (CSV or Parquet) with the target."),
    target: str = typer.Option(..., "--target", "-t", help="Target column name."),
    validation: Optional[Path] = typer.Option(None, "--validation", "-v",
                                              help="Labelled data the model was NOT trained on (for the baseline)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Model name in the store (default: file stem)."),
    task: Optional[str] = typer.Option(None, "--task", help="classification or regression (default: inferred)."),
    categorical: list[str] = typer.Option([], "--categorical", "-c", help="Treat this numeric column as categorical."),
) -> None:
    """Save a model with its schema, reference profile and baseline in the model store."""
    from rich.progress import BarColumn, Progress, TextColumn

    from models.data import DataError
    from models.registry import RegistrationError
    from models.registry import register as do_register

    try:
        with Progress(TextColumn("profiling reference"), BarColumn(), TextColumn("{task.completed:,} rows"),
                      console=err, transient=True) as progress:
            task_id = progress.add_task("rows", total=None)
            result = do_register(model_file, reference, target, validation=validation, name=name, task=task,
                                 categorical=categorical, progress=lambda n: progress.advance(task_id, n))
    except (RegistrationError, DataError) as exc:
        _fail(str(exc))
    for note in result.warnings:
        err.print(f"[yellow]warning:[/] {note}", highlight=False)
    figures = ", ".join(f"{k}={v:.4g}" for k, v in result.baseline.items())
    err.print(f"registered {result.task} model: {result.n_reference:,} reference rows, baseline "
              f"({'in-sample' if result.in_sample else f'{result.n_validation:,} validation rows'}): {figures}",
              highlight=False)
    out.print(result.tag, highlight=False)


@app.command()
def demo(if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if both demo models exist.")) -> None:
    """Train and register the demo classifier (breast cancer) and regressor (diabetes)."""
    from models.demo import demo_registered, register_demo

    if if_missing and demo_registered():
        err.print("demo models already registered")
        return
    for kind in ("classifier", "regressor"):
        r = register_demo(kind)
        figures = ", ".join(f"{k}={v:.4g}" for k, v in r.baseline.items())
        err.print(f"{kind}: validation baseline {figures}", highlight=False)
        out.print(r.tag, highlight=False)


@app.command()
def serve(
    tag: Optional[str] = typer.Argument(None, help="Model tag (default: VIGIL_MODEL, else the demo classifier)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(3000, help="Port to bind."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: VIGIL_WORKERS, else 1)."),
) -> None:
    """Serve a registered model (``bentoml serve service:MonitoredModel``)."""
    from models.registry import RegistrationError, read_schema
    from monitoring.config import ENV_CONFIG, ConfigError
    from service.settings import load_server_settings

    env = dict(os.environ)
    if tag:
        env["VIGIL_MODEL"] = tag
    if workers is not None:
        env["VIGIL_WORKERS"] = str(workers)
    if env.get(ENV_CONFIG):  # the server runs in the project root: a relative path must not change meaning
        env[ENV_CONFIG] = str(Path(env[ENV_CONFIG]).resolve())
    try:
        settings = load_server_settings(environ=env)
        schema = read_schema(settings.model)
        _check_rules(settings, schema)
    except (ConfigError, RegistrationError, ValueError) as exc:
        _fail(str(exc))
    busy = _port_in_use(host, port)
    if busy:
        _fail(f"cannot listen on {host}:{port}: {busy} (choose another with --port)")
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "bentoml", "serve", "service:MonitoredModel", "--host", host, "--port", str(port),
           "--working-dir", str(root)]
    os.execvpe(cmd[0], cmd, env)


def _port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound now (None: it can). Checked before BentoML starts,
    whose own failure is a traceback from deep inside its supervisor."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: list, silence, acknowledge, re-baseline, export.")
app.add_typer(alerts_app, name="alerts")

_URL = typer.Option("http://127.0.0.1:3000", "--url", help="The running Vigil server.")
_TOKEN = typer.Option(None, "--token", envvar="VIGIL_API_TOKEN", show_envvar=True,
                      help="Bearer token for the admin endpoints.")


@app.command()
def simulate(
    scenario: str = typer.Argument(..., help="steady, gradual-drift, sudden-drift, label-decay or outage."),
    url: str = typer.Option("http://127.0.0.1:3000", "--url", help="The served model (the only host contacted)."),
    duration: float = typer.Option(120.0, "--duration", help="Stop after this many seconds (at most 3600)..."),
    requests: int = typer.Option(5000, "--requests", help="... or this many /predict requests (at most 100,000)."),
    rate: float = typer.Option(20.0, "--rate", help="/predict requests a second."),
    batch: int = typer.Option(10, "--batch", help="Rows per request."),
    feedback_delay: float = typer.Option(5.0, "--feedback-delay", help="Seconds before a row's true outcome is posted."),
    label_share: float = typer.Option(1.0, "--label-share", help="Share of rows whose outcome is posted."),
    feature: list[str] = typer.Option([], "--feature", "-f",
                                      help="A feature to drift (repeat it; default: the first two numeric)."),
    shift: float = typer.Option(3.0, "--shift", help="How far drifted features move, in standard deviations."),
    flip: float = typer.Option(0.3, "--flip", help="Share of outcomes that change when the world does."),
    change_at: float = typer.Option(0.4, "--change-at", help="sudden-drift: when the change comes (share of the run)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Rows to resample (CSV/Parquet) instead of the server's."),
    target: Optional[str] = typer.Option(None, "--target", help="The outcome column of --data."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same rows and flips."),
    record: Optional[Path] = typer.Option(None, "--record", help="Write a JSON line per /predict request (ids, status)."),
    token: Optional[str] = _TOKEN,
) -> None:
    """Drive a served model with realistic traffic and delayed feedback (see the README)."""
    import json

    import httpx
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from service.scenarios import Knobs
    from service.simulate import Plan, Sample, SimulationError, Simulator, describe, fetch_sample

    try:
        plan = Plan(url=url.rstrip("/"), scenario=scenario, duration=duration, max_requests=requests, rate=rate,
                    batch=batch, feedback_delay=feedback_delay, label_share=label_share,
                    drifted=tuple(feature) or None, knobs=Knobs(shift, flip, change_at), seed=seed)
    except ValueError as exc:
        _fail(str(exc))
    if data is not None and not target:
        _fail("--data needs --target (the outcome column)")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out_file = record.open("w", encoding="utf-8") if record else None
    with httpx.Client(base_url=plan.url, headers=headers, timeout=30, follow_redirects=False) as client:
        try:
            sample = Sample.from_file(data, target, seed=seed) if data else fetch_sample(client, seed)
            with Progress(SpinnerColumn(), TextColumn(f"[bold]{scenario}[/] {{task.fields[phase]:<9}}"), BarColumn(),
                          TaskProgressColumn(), TimeElapsedColumn(), TextColumn("{task.fields[stats]}"),
                          console=err) as progress:
                bar = progress.add_task("run", total=1.0, phase="", stats="")
                sim = Simulator(plan, client, sample, record=(lambda d: out_file.write(json.dumps(d) + "\n"))
                                if out_file else None, on_progress=lambda t: progress.update(
                                    bar, completed=min(1.0, t.progress), phase=t.phase, stats=describe(t)))
                tally = sim.run()
        except (SimulationError, OSError) as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted")
        finally:
            if out_file:
                out_file.close()
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items(), key=lambda kv: str(kv[0])))
    err.print(f"{tally.requests:,} /predict requests ({codes}), {tally.rows:,} rows predicted, "
              f"{tally.outcomes_posted:,} outcomes posted ({tally.feedback_errors} feedback errors); drifted: "
              f"{', '.join(sim.drifted) or 'none'}. See {plan.url}/dashboard/", highlight=False)


def _call(method: str, url: str, path: str, token: Optional[str], body: Optional[dict] = None) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {type(exc).__name__}: {exc}")
    try:
        data = r.json()
    except ValueError:
        data = {"error": r.text[:300]}
    if r.status_code >= 400:
        _fail(f"{method} {path}: HTTP {r.status_code}: {data.get('error', data)}")
    return data


def _print_json(data: dict) -> None:
    import json

    out.print(json.dumps(data, indent=2, default=str), highlight=False)


@alerts_app.command("list")
def alerts_list(url: str = _URL, show_rules: bool = typer.Option(False, "--rules", help="Show the rules too.")) -> None:
    """Current alerts (and, with --rules, the active rules and how they were derived)."""
    from rich.table import Table

    data = _call("GET", url, "/monitoring/alerts", None)
    t = Table(title=f"alerts of {data['model']}")
    for col in ("rule", "instance", "state", "severity", "value", "since", "acknowledged"):
        t.add_column(col)
    import datetime as dt

    for a in data["alerts"]:
        since = dt.datetime.fromtimestamp(a["since"]).isoformat(timespec="seconds") if a.get("since") else ""
        t.add_row(a["rule"], a.get("instance") or "", a["state"], a["severity"],
                  "" if a.get("value") is None else f"{a['value']:.4g}", since, a.get("acknowledged_by") or "")
    out.print(t)
    if show_rules:
        r = Table(title="rules")
        for col in ("name", "condition", "for_windows", "resolve_windows", "severity", "derivation"):
            r.add_column(col)
        for rule in data["rules"]:
            r.add_row(rule["name"], rule["condition"], str(rule["for_windows"]), str(rule["resolve_windows"]),
                      rule["severity"], rule["derivation"])
        out.print(r)
    o = data["outbox"]
    err.print(f"outbox: {o['pending']} pending, {o['delivered']} delivered, {o['failed']} failed; "
              f"{len(data['silences'])} active silence(s)", highlight=False)


@alerts_app.command()
def silence(rule: str = typer.Argument(..., help="Rule name, or '*' for every rule."),
            seconds: float = typer.Option(3600, "--seconds", help="How long."),
            instance: Optional[str] = typer.Option(None, "--instance", help="Only this feature/class/metric."),
            reason: Optional[str] = typer.Option(None, "--reason"), by: Optional[str] = typer.Option(None, "--by"),
            url: str = _URL, token: Optional[str] = _TOKEN) -> None:
    """Silence a rule's notifications for a while (alerts are still evaluated and shown)."""
    _print_json(_call("POST", url, "/admin/silences", token, {"rule": rule, "seconds": seconds, "instance": instance,
                                                               "reason": reason, "by": by}))


@alerts_app.command()
def unsilence(silence_id: int = typer.Argument(...), url: str = _URL, token: Optional[str] = _TOKEN) -> None:
    """End a silence now (a rule still firing is then announced)."""
    _print_json(_call("DELETE", url, f"/admin/silences/{silence_id}", token))


@alerts_app.command()
def ack(rule: str = typer.Argument(...), instance: Optional[str] = typer.Option(None, "--instance"),
        by: Optional[str] = typer.Option(None, "--by"), url: str = _URL, token: Optional[str] = _TOKEN) -> None:
    """Acknowledge a firing alert: no repeat notifications until it resolves."""
    _print_json(_call("POST", url, "/admin/alerts/ack", token, {"rule": rule, "instance": instance, "by": by}))


@alerts_app.command()
def rebaseline(window_id: int = typer.Argument(..., help="An evaluated window (see /monitoring/drift)."),
               by: Optional[str] = typer.Option(None, "--by"), url: str = _URL,
               token: Optional[str] = _TOKEN) -> None:
    """Adopt an evaluated window as the model's drift reference, without a restart."""
    _print_json(_call("POST", url, "/admin/rebaseline", token, {"window_id": window_id, "by": by}))


@alerts_app.command("export-prometheus")
def export_prometheus(
    tag: Optional[str] = typer.Argument(None, help="Model tag (default: VIGIL_MODEL, else the demo classifier)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
) -> None:
    """Write a Prometheus alerting-rules file equivalent to the model's active rules."""
    from monitoring.alerts import active_rules
    from monitoring.alerts.defaults import ModelShape
    from monitoring.config import ConfigError
    from monitoring.stats.performance import HIGHER_IS_BETTER
    from service.settings import load_server_settings
    from monitoring.alerts.promql import references_from, render

    try:
        settings = load_server_settings(model=tag)
        from models.registry import RegistrationError, load

        loaded = load(settings.model)
    except (ConfigError, RegistrationError) as exc:
        _fail(str(exc))
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
        err.print(f"wrote {output}", highlight=False)


def _check_rules(settings, schema) -> None:
    """Alert rules must name features, classes and metrics the model has (ValueError if not)."""
    from monitoring.alerts import TASK_METRICS, RuleContext, active_rules, check_labels

    check_labels(active_rules(settings, schema.task, multivariate=False), RuleContext(
        features=tuple(schema.names), classes=tuple(str(c) for c in schema.classes),
        metrics=TASK_METRICS[schema.task], reference_rows=0, drift_alpha=settings.drift_alpha,
        error_rate=settings.alert_error_rate))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
