"""``vigil register`` and ``vigil demo``: models into the BentoML model store.

The tag goes to stdout (``TAG=$(vigil register ...)``); progress, warnings and the
baseline summary to stderr. Unusable models or data are one ``error:`` line, exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import err, fail, note, out


def register(
    model_file: Path = typer.Argument(..., metavar="MODEL_FILE",
                                      help="joblib/pickle file holding a fitted estimator, pipeline or callable."),
    reference: Path = typer.Option(..., "--reference", "-r", metavar="FILE",
                                   help="Reference data (CSV or Parquet) with the target column."),
    target: str = typer.Option(..., "--target", "-t", metavar="COLUMN", help="Target column name."),
    validation: Optional[Path] = typer.Option(None, "--validation", metavar="FILE",
                                              help="Labelled data the model was NOT trained on (for the baseline)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", metavar="NAME",
                                       help="Model name in the store (default: the file's stem)."),
    task: Optional[str] = typer.Option(None, "--task", metavar="TASK",
                                       help="classification or regression (default: inferred from the target)."),
    categorical: list[str] = typer.Option([], "--categorical", "-c", metavar="COLUMN",
                                          help="Treat this numeric column as categorical (repeat it)."),
    monitor: list[str] = typer.Option([], "--monitor", metavar="COLUMN",
                                      help="Test this id- or date-like column for drift anyway (repeat it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the registration report as JSON instead of the tag."),
) -> None:
    """Save a model with its schema, reference profile and baseline in the model store.

    The report of what was found goes to stderr, the tag alone to stdout (--json: the report)."""
    from rich.progress import BarColumn, Progress, TextColumn

    from models.data import DataError
    from models.registry import RegistrationError
    from models.registry import register as do_register
    from models.report import show

    try:
        with Progress(TextColumn("profiling reference"), BarColumn(), TextColumn("{task.completed:,} rows"),
                      console=err, transient=True) as progress:
            task_id = progress.add_task("rows", total=None)
            result = do_register(model_file, reference, target, validation=validation, name=name, task=task,
                                 categorical=categorical, monitor=monitor,
                                 progress=lambda n: progress.advance(task_id, n))
    except (RegistrationError, DataError) as exc:
        fail(str(exc))
    show(result, err=err, out=out(), as_json=as_json)


def demo(if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if both demo models exist.")) -> None:
    """Train and register the demo classifier (breast cancer) and regressor (diabetes)."""
    from models.demo import demo_registered, register_demo

    if if_missing and demo_registered():
        note("demo models already registered")
        return
    for kind in ("classifier", "regressor"):
        r = register_demo(kind)
        figures = ", ".join(f"{k}={v:.4g}" for k, v in r.baseline.items())
        note(f"{kind}: validation baseline {figures}")
        out().print(r.tag)
