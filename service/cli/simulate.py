"""``vigil simulate``: the command line of :mod:`service.simulate` (realistic traffic and
delayed feedback against one served model). Bad knobs are one ``error:`` line, exit 2;
the run's progress and summary go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import clean_token, err, fail, note, token_option


def simulate(
    scenario: str = typer.Argument(..., metavar="SCENARIO",
                                   help="steady, gradual-drift, sudden-drift, label-decay or outage."),
    url: str = typer.Option("http://127.0.0.1:3000", "--url", metavar="URL",
                            help="The served model (the only host contacted)."),
    duration: float = typer.Option(120.0, "--duration", metavar="SECONDS",
                                   help="Stop after this many seconds (at most 3600)..."),
    requests: int = typer.Option(5000, "--requests", metavar="N",
                                 help="... or this many /predict requests (at most 100,000)."),
    rate: float = typer.Option(20.0, "--rate", metavar="PER_SECOND", help="/predict requests a second."),
    batch: int = typer.Option(10, "--batch", metavar="ROWS", help="Rows per request."),
    feedback_delay: float = typer.Option(5.0, "--feedback-delay", metavar="SECONDS",
                                         help="Seconds before a row's true outcome is posted."),
    label_share: float = typer.Option(1.0, "--label-share", metavar="SHARE",
                                      help="Share of rows whose outcome is posted (0 to 1)."),
    feature: list[str] = typer.Option([], "--feature", "-f", metavar="NAME",
                                      help="A feature to drift (repeat it; default: the first two numeric)."),
    shift: float = typer.Option(3.0, "--shift", metavar="SD",
                                help="How far drifted features move, in standard deviations."),
    flip: float = typer.Option(0.3, "--flip", metavar="SHARE", help="Share of outcomes that change when the world does."),
    change_at: float = typer.Option(0.4, "--change-at", metavar="SHARE",
                                    help="sudden-drift: when the change comes (share of the run)."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="FILE",
                                        help="Rows to resample (CSV/Parquet) instead of the server's."),
    target: Optional[str] = typer.Option(None, "--target", metavar="COLUMN", help="The outcome column of --data."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Same seed, same rows and flips."),
    record: Optional[Path] = typer.Option(None, "--record", metavar="FILE",
                                          help="Write a JSON line per /predict request (ids, status)."),
    token: Optional[str] = token_option(),
) -> None:
    """Drive a served model with realistic traffic and delayed feedback (see docs/dashboard.md)."""
    import httpx
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from service.scenarios import Knobs
    from service.simulate import Plan, Sample, SimulationError, Simulator, describe, fetch_sample

    try:
        plan = Plan(url=url.rstrip("/"), scenario=scenario, duration=duration, max_requests=requests, rate=rate,
                    batch=batch, feedback_delay=feedback_delay, label_share=label_share,
                    drifted=tuple(feature) or None, knobs=Knobs(shift, flip, change_at), seed=seed)
    except ValueError as exc:
        fail(str(exc))
    if data is not None and not target:
        fail("--data needs --target (the outcome column)")
    token = clean_token(token)
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
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted")
        finally:
            if out_file:
                out_file.close()
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items(), key=lambda kv: str(kv[0])))
    note(f"{tally.requests:,} /predict requests ({codes}), {tally.rows:,} rows predicted, "
         f"{tally.outcomes_posted:,} outcomes posted ({tally.feedback_errors} feedback errors); drifted: "
         f"{', '.join(sim.drifted) or 'none'}. See {plan.url}/dashboard/")
