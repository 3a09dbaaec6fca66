"""The performance tracker: joins late outcomes, scores windows, publishes results.

Runs on the monitor thread (``tick``), never on the request path. Any worker may score a
window; the result is a pure function of the stored rows, so the last write wins safely.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from monitoring import names as N
from monitoring.stats.dle import Dle, window_fields
from monitoring.stats.performance import Baseline, Cbpe, PerformanceConfig, window_performance
from monitoring.stats.results import PerformanceResult
from monitoring.store import Store, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scorer:
    """How one window is scored: the task, the validation baseline (bands), the label-free
    estimator and the performance settings. A pure function of the stored rows.

    ``dle``: regressors' label-free estimator; ``dle_features``: whether it may read the
    window's logged feature values (not when they are unlogged, hashed or dropped)."""

    task: str
    n_classes: int
    baseline: Baseline | None
    cbpe: Cbpe | None
    config: PerformanceConfig
    class_names: tuple = ()
    dle: Dle | None = None
    dle_features: bool = False

    def score(self, window_id: int, data: dict, now: float, ended_at: float | None,
              open_window: bool = False) -> PerformanceResult:
        """``open_window``: the window is still taking rows, so however many of its rows are
        labelled, its figures are not final (a 2-row open window with both labelled read
        ``final: true`` and could judge the performance rules on two rows)."""
        out = window_performance(self.task, window_id, data, self.baseline, self.cbpe, self.config, self.n_classes,
                                 now, ended_at, list(self.class_names) or None)
        if self.dle is not None and data["n"]:
            out.update(window_fields(self.dle, data))
        if open_window:
            out["final"] = False
            out["open"] = True
        return PerformanceResult.from_dict(out)


@dataclass(frozen=True)
class Schedule:
    """How often the tracker scores (``interval``), when an unmatched outcome expires
    (``outcome_ttl``) and how long history is kept (``retention``; None: forever), seconds."""

    interval: float = 5.0
    outcome_ttl: float = 30 * 24 * 3600.0
    retention: float | None = None


class PerformanceTracker:
    """Joins late outcomes, scores windows, purges old history. ``tick`` returns the results
    it scored (the caller publishes them and feeds the alert rules)."""

    def __init__(self, store: Store, model: str, scorer: Scorer, schedule: Schedule = Schedule(), *,
                 metrics=None, clock: Callable[[], float] = time.time):
        self.store = store
        self.model = model
        self.scorer = scorer
        self.baseline = scorer.baseline
        self.interval = schedule.interval
        self.outcome_ttl = schedule.outcome_ttl
        self.retention = schedule.retention
        self.metrics = metrics
        self.clock = clock
        self._last = 0.0
        self._last_purge = 0.0
        self.errors = 0
        self.last_error: str | None = None

    def tick(self, force: bool = False) -> list[PerformanceResult]:
        """Score what is due; returns the results stored by this call (also those stored
        before a store failure cut the pass short)."""
        now = self.clock()
        scored: list[PerformanceResult] = []
        if not force and now - self._last < self.interval:
            return scored
        self._last = now
        try:
            self._run(now, scored)
            self.last_error = None
        except StoreUnavailable as exc:  # counted; the next tick tries again
            self.errors += 1
            self.last_error = exc.reason
            if self.metrics is not None:
                self.metrics[N.M_MONITOR_ERRORS].add(1)
        return scored

    def _run(self, now: float, scored: list[PerformanceResult]) -> None:
        if self.retention is not None and now - self._last_purge >= 3600:
            self._last_purge = now
            deleted = self.store.purge(self.model, now - self.retention)
            if any(deleted.values()):
                log.info("retention: deleted %s", deleted)
        matched, expired = self.store.outcomes.match_pending(self.model, now - self.outcome_ttl)
        if expired and self.metrics is not None:
            self.metrics[N.M_OUTCOMES_EXPIRED].add(expired)
        state = self.store.outcomes.performance_state(self.model)
        todo: dict[int, float | None] = {}
        for wid, newest, _ in self.store.outcomes.windows_to_score(self.model):
            done = state.get(wid)
            if done is None or newest > done[0] or (not done[1] and now - done[0] > 60):
                todo[wid] = None
        records = self.store.windows.recent(self.model, limit=50)
        closed = {r.window_id: r.ended_at for r in records}
        newest = max(closed, default=-1)  # windows after the newest evaluated one are still open
        for r in records:
            wid, ended = r.window_id, r.ended_at
            if wid not in state or wid in todo:
                todo[wid] = ended
            elif not state[wid][1] and (now - state[wid][0] > 60 or state[wid][0] < (r.evaluated_at or 0)):
                todo[wid] = ended  # not final: rescored a minute on, or at once if it was scored while open
        for wid in sorted(todo):
            data = self.store.outcomes.window_predictions(self.model, wid)
            if data["n"] == 0:
                continue
            if self.scorer.dle is not None and self.scorer.dle_features:
                data["logged"] = self.store.outcomes.window_features(self.model, wid)
            res = self.scorer.score(wid, data, now, todo[wid] if todo[wid] is not None else closed.get(wid),
                                    open_window=wid > newest)
            self.store.outcomes.save_performance(self.model, wid, dict(res.stored), res.final, res.labelled, now)
            scored.append(res)
