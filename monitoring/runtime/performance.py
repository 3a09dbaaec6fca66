"""The performance tracker: joins late outcomes, scores windows, publishes results.

Runs on the monitor thread (``tick``), never on the request path. Any worker may score a
window; the result is a pure function of the stored rows, so the last write wins safely.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from monitoring import names as N
from monitoring.stats.performance import Baseline, Cbpe, PerformanceConfig, window_performance
from monitoring.store import Store, StoreUnavailable

log = logging.getLogger(__name__)


class PerformanceTracker:
    def __init__(self, store: Store, model: str, task: str, n_classes: int, baseline: Baseline | None,
                 cbpe: Cbpe | None, config: PerformanceConfig, *, interval: float = 5.0,
                 outcome_ttl: float = 30 * 24 * 3600.0, retention: float | None = None, metrics=None,
                 publish: Callable[[dict], None] | None = None, clock: Callable[[], float] = time.time,
                 class_names=None):
        self.store = store
        self.model = model
        self.task = task
        self.k = n_classes
        self.baseline = baseline
        self.cbpe = cbpe
        self.config = config
        self.interval = interval
        self.outcome_ttl = outcome_ttl
        self.metrics = metrics
        self.publish = publish
        self.clock = clock
        self.class_names = class_names
        self._last = 0.0
        self.retention = retention
        self._last_purge = 0.0
        self.errors = 0
        self.last_error: str | None = None

    def tick(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        try:
            self._run(now)
            self.last_error = None
        except StoreUnavailable as exc:  # counted; the next tick tries again
            self.errors += 1
            self.last_error = exc.reason
            if self.metrics is not None:
                self.metrics[N.M_MONITOR_ERRORS].add(1)

    def _run(self, now: float) -> None:
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
        closed = {r.window_id: r.ended_at for r in self.store.windows.recent(self.model, limit=50)}
        for wid, ended in closed.items():
            if wid not in state or wid in todo:
                todo[wid] = ended
            elif not state[wid][1] and now - state[wid][0] > 60:
                todo[wid] = ended
        for wid in sorted(todo):
            data = self.store.outcomes.window_predictions(self.model, wid)
            if data["n"] == 0:
                continue
            res = window_performance(self.task, wid, data, self.baseline, self.cbpe, self.config, self.k, now,
                                     todo[wid] if todo[wid] is not None else closed.get(wid), self.class_names)
            self.store.outcomes.save_performance(self.model, wid, res, res["final"], res["labelled"], now)
            if self.publish is not None:
                try:
                    self.publish(res)
                except Exception:  # a publisher bug must not stop scoring
                    log.exception("publishing performance of window %d failed", wid)
