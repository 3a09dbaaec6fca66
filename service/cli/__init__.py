"""The ``vigil`` command line, one module per command group:

- :mod:`.register` ``register``, ``demo``: models into the store;
- :mod:`.models` ``models list|show``: what the store holds;
- :mod:`.serve` ``serve``: check the settings, model and port, then run BentoML;
- :mod:`.status` ``status``: a running server's state;
- :mod:`.alerts` ``alerts list|silence|unsilence|ack|rebaseline|export-prometheus``;
- :mod:`.simulate` ``simulate``: traffic and feedback against a running server;
- :mod:`.common`: consoles, one-line errors, durations, the HTTP call.

Entry points: ``vigil`` (``pyproject.toml`` ``[project.scripts]``: :func:`main`) and
``python -m service.cli``. Help text is plain (no rich boxes or ``<bool>`` types) so it
reads the same in a terminal, a pipe and the snapshot tests (``tests/service/cli/``).
Exit status: 0 done, 2 a usage or user error (one ``error:`` line), 1 an unexpected
failure.
"""

from __future__ import annotations

from typing import Optional

import typer

from . import alerts, models, register, serve, simulate, status
from .common import typer_app

__all__ = ["app", "main", "version"]

app = typer_app("Vigil: serve any model with tracing, metrics and monitoring built in.")


def version() -> str:
    """``vigil X.Y.Z (bentoml A.B.C, python D.E.F)``."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    def of(dist: str) -> str:
        try:
            return dist_version(dist)
        except PackageNotFoundError:
            return "unknown"

    return f"vigil {of('vigil')} (bentoml {of('bentoml')}, python {platform.python_version()})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version())
        raise typer.Exit()


@app.callback()
def root(show_version: Optional[bool] = typer.Option(None, "--version", "-V", callback=_print_version,
                                                     is_eager=True, help="Print the version and exit.")) -> None:
    """Vigil: serve any model with tracing, metrics and monitoring built in.

    Start with: vigil register MODEL_FILE --reference FILE --target COLUMN, then vigil serve NAME.
    """


app.command()(register.register)
app.command()(register.demo)
app.command()(serve.serve)
app.command()(status.status)
app.command()(simulate.simulate)
app.add_typer(models.app, name="models")
app.add_typer(alerts.app, name="alerts")


def main() -> None:
    app(prog_name="vigil")  # also under ``python -m service.cli``: help and errors name the real command
