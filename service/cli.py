"""The ``vigil`` command line: register models, create the demo models, serve."""

from __future__ import annotations

import os
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
    from monitoring.config import ConfigError, load_settings

    env = dict(os.environ)
    if tag:
        env["VIGIL_MODEL"] = tag
    if workers is not None:
        env["VIGIL_WORKERS"] = str(workers)
    try:
        settings = load_settings(environ=env)
        from models.registry import RegistrationError, read_schema

        read_schema(settings.model)
    except (ConfigError, RegistrationError) as exc:
        _fail(str(exc))
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "bentoml", "serve", "service:MonitoredModel", "--host", host, "--port", str(port),
           "--working-dir", str(root)]
    os.execvpe(cmd[0], cmd, env)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
