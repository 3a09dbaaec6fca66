"""``vigil serve``: check everything a user can get wrong, then become ``bentoml serve``.

Before the process is replaced (``os.execvpe``) the settings are loaded, the model's
model loaded (so a module its pickle needs but cannot import is one line, not a crash loop
of workers) and the alert rules checked against its schema, and the port tried: each mistake is
one ``error:`` line and exit 2, where BentoML would print a traceback from deep inside its
supervisor. A relative ``VIGIL_CONFIG`` is resolved here, because the server runs in the
project root.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Optional

import typer

from .common import fail


def serve(
    tag: Optional[str] = typer.Argument(None, metavar="TAG",
                                        help="Model tag (default: VIGIL_MODEL, else the demo classifier)."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to bind."),
    port: int = typer.Option(3000, "--port", "-p", metavar="PORT", help="Port to bind."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", metavar="N",
                                          help="Worker processes (default: VIGIL_WORKERS, else 1)."),
) -> None:
    """Serve a registered model: settings, model and port are checked, then BentoML serves
    service:MonitoredModel. Configure it with VIGIL_* variables or a VIGIL_CONFIG file."""
    from models.registry import RegistrationError, load
    from monitoring.config import ENV_CONFIG, ConfigError
    from service.settings import load_server_settings

    env = dict(os.environ)
    if tag:
        env["VIGIL_MODEL"] = tag
    if workers is not None:
        env["VIGIL_WORKERS"] = str(workers)
    if env.get(ENV_CONFIG):  # the server runs in the project root: a relative path must not change meaning
        env[ENV_CONFIG] = str(Path(env[ENV_CONFIG]).resolve())
    if env.get("PYTHONPATH"):  # likewise the directories the model's own modules are imported from
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p or ".").resolve()) for p in env["PYTHONPATH"].split(os.pathsep))
    try:
        settings = load_server_settings(environ=env)
        schema = load(settings.model).schema  # unpickled here: a missing import is one line, not a crash loop
        check_rules(settings, schema)
    except (ConfigError, RegistrationError, ValueError) as exc:
        fail(str(exc))
    busy = port_in_use(host, port)
    if busy:
        fail(f"cannot listen on {host}:{port}: {busy} (choose another with --port)")
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "bentoml", "serve", "service:MonitoredModel", "--host", host, "--port", str(port),
           "--working-dir", str(root)]
    os.execvpe(cmd[0], cmd, env)


def port_in_use(host: str, port: int) -> str | None:
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


def check_rules(settings, schema) -> None:
    """Alert rules must name features, classes and metrics the model has (ValueError if not)."""
    from monitoring.alerts import TASK_METRICS, RuleContext, active_rules, check_labels

    check_labels(active_rules(settings, schema.task, multivariate=False), RuleContext(
        features=tuple(schema.names), classes=tuple(str(c) for c in schema.classes),
        metrics=TASK_METRICS[schema.task], reference_rows=0, drift_alpha=settings.drift_alpha,
        error_rate=settings.alert_error_rate))
