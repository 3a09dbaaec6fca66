"""A store filled directly with evaluated windows (real reports, sketches and serving
figures, and performance results shaped as the tracker writes them), for the dashboard
views' tests and their benchmark, without serving a single request."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monitoring.runtime.history import digest
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
from monitoring.stats.profile import Profile
from monitoring.stats.serving import ServingStats
from monitoring.store import Store, WindowRecord

T0 = 1_800_000_000.0


def fill(store: Store, tag: str, evaluator: WindowEvaluator, window: Callable[[int, np.random.Generator], Profile],
         windows: int, *, first: int = 0, seconds: float = 60.0, seed: int = 0, performance: bool = True,
         digests: bool = True) -> None:
    """Evaluate ``windows`` windows from id ``first``, ``window(i, rng)`` making window i's profile,
    and store them as the evaluator of a served model would (window *i* ends at
    ``T0 + (i + 1) * seconds``); with ``performance``, a scored result per window too; without
    ``digests``, as a store from before schema v4 holds them (no digest beside the report)."""
    rng = np.random.default_rng(seed)
    for wid in range(first, first + windows):
        win = window(wid, rng)
        started, ended = T0 + wid * seconds, T0 + (wid + 1) * seconds
        report = evaluator.evaluate(win, wid, started_at=started, ended_at=ended).to_dict()
        served = ServingStats("bench")
        for s in rng.gamma(2.0, 0.004, size=50):
            served.record(200 if rng.random() > 0.01 else 500, float(s), f"{rng.integers(1 << 62):032x}")
        served.note_system(0.3 + 0.1 * rng.random(), 2.5e8)
        report.update(rows_expected=win.rows, complete=True, serving=served.take().summary())
        assert store.windows.claim(tag, wid, "bench", ended)
        row = digest(WindowRecord(wid, "done", win.rows, win.rows, started, ended, ended, report), evaluator.schema.names)
        assert store.windows.finish(tag, wid, "bench", report, win.rows, win.rows, started, ended, ended,
                                    sketch=win.to_dict(), digest=row if digests else None)
        if performance:
            store.outcomes.save_performance(tag, wid, _performance(wid, win.rows, rng), True, win.rows, ended + 5)


def _performance(wid: int, n: int, rng: np.random.Generator) -> dict:
    acc = float(np.clip(rng.normal(0.95, 0.015), 0, 1))
    metrics = ("accuracy", "precision", "recall", "f1", "roc_auc")
    return {"window_id": wid, "predictions": n, "labelled": n, "coverage": 1.0,
            "label_delay_seconds": {"p50": 30.0, "p90": 60.0, "max": 90.0}, "final": True,
            "estimated": {k: {"value": 0.95, "se": 0.015} for k in metrics},
            "realized": {k: acc for k in metrics}, "baseline": {k: 0.95 for k in metrics},
            "band": {k: [0.9, 0.99] for k in metrics}, "band_status": {k: "within" for k in metrics},
            "degraded": [], "status": "ok", "alerting": True, "computed_at": T0 + (wid + 1) * 60 + 5}


def evaluator_for(schema, reference: Profile) -> WindowEvaluator:
    return WindowEvaluator(schema, reference, DriftConfig())
