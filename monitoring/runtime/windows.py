"""Monitoring windows, agreed on by every worker and replica.

Rows are numbered by one counter in the store (``store.windows.reserve_rows``): window *w*
holds rows ``[w·R, (w+1)·R)`` for ``R = window_rows``. Each worker folds the rows it
served into its own partial sketch per window and flushes it to the store; a window is
complete when the partials hold all its rows, and exactly one worker (the one that claims
it) merges the partials (sketches merge by addition, so the merge is exact) and evaluates
the window. A window that runs longer than ``window_seconds`` is sealed: the counter jumps
to the next window and the short window closes with the rows it got. A worker that dies
holding rows cannot block a window forever: it is evaluated as incomplete after
``stale_seconds``.

The store is only touched here, on the monitor thread. If it is unavailable
(:class:`~monitoring.store.StoreUnavailable`), rows wait in a bounded buffer (then are
dropped and counted) and everything resumes when it returns.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from monitoring import names as N
from monitoring.stats.evaluate import WindowEvaluator, WindowReport
from monitoring.runtime.evidence import attach_statistics
from monitoring.runtime.history import digest
from monitoring.runtime.predlog import PredictionLogger
from monitoring.runtime.queue import MonitorItem
from monitoring.stats.profile import Profile
from monitoring.stats.serving import ServingSketch, ServingStats
from monitoring.store import Partial, Store, StoreUnavailable, WindowRecord

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Open:
    profile: Profile
    first_at: float
    last_at: float
    rejected: Counter
    dirty: bool = True
    serving: ServingSketch | None = None


@dataclass(frozen=True)
class WindowState:
    pending_rows: int
    open_windows: tuple[int, ...]
    buffered_dropped_rows: int
    store_errors: int
    last_error: str | None
    evaluated: int


@dataclass(frozen=True)
class WindowConfig:
    """When windows close and how much this worker may hold while the store is away.

    ``rows`` and ``seconds``: a window closes after this many rows, or is sealed after this
    long; ``stale_seconds``: a window whose partials stopped growing this long ago is
    evaluated as incomplete (default max(2 x seconds, 30 s)); ``flush_interval``: partials
    are written at most this often; ``max_pending_rows``: rows (and log rows) buffered while
    the store is unreachable, beyond which they are dropped and counted; ``worker``: this
    process's key in the partials table (default: host:pid:random)."""

    rows: int
    seconds: float
    stale_seconds: float | None = None
    flush_interval: float = 0.5
    max_pending_rows: int = 100_000
    worker: str | None = None

    def __post_init__(self) -> None:
        if self.rows < 1 or self.seconds <= 0:
            raise ValueError(f"window rows must be >= 1 and seconds > 0; got {self.rows}, {self.seconds}")
        if self.flush_interval < 0 or self.max_pending_rows < 1:
            raise ValueError("flush_interval must be >= 0 and max_pending_rows >= 1")


@dataclass(frozen=True)
class ClosedWindow:
    """A window this worker evaluated and stored: the typed report, the serving figures and
    the stored form (what the views and alert observers read)."""

    report: WindowReport
    rows: int
    rows_expected: int
    serving: dict
    stored: dict

    @property
    def window_id(self) -> int:
        return self.report.window_id

    @property
    def complete(self) -> bool:
        return self.rows >= self.rows_expected


class WindowManager:
    """A :class:`~monitoring.runtime.queue.Consumer`: assigns rows to windows, flushes partials,
    seals, claims and evaluates windows. ``consume``, ``tick`` and ``flush`` return the
    windows this worker closed (the caller publishes them and feeds the alert rules)."""

    def __init__(self, store: Store, model: str, evaluator: WindowEvaluator, config: WindowConfig, *,
                 prediction_log: "PredictionLogger | None" = None, serving: ServingStats | None = None,
                 metrics=None, clock: Callable[[], float] = time.time):
        self.store = store
        self.model = model
        self.reference = evaluator.reference
        self.evaluator = evaluator
        self.config = config
        self.window_rows = config.rows
        self.window_seconds = config.seconds
        self.task = evaluator.schema.task
        self.metrics = metrics
        self.max_pending_rows = config.max_pending_rows
        self.flush_interval = config.flush_interval
        self.stale_seconds = config.stale_seconds if config.stale_seconds is not None else max(
            2 * config.seconds, 30.0)
        self.worker = config.worker or worker_id()
        self.clock = clock
        self._counter = f"rows:{model}"
        self._pending: deque[MonitorItem] = deque()
        self._pending_rows = 0
        self._open: dict[int, _Open] = {}
        self._rejected: Counter = Counter()
        self._rejected_lock = threading.Lock()
        self._last_flush = 0.0
        self._dropped = 0
        self._store_errors = 0
        self._last_error: str | None = None
        self._evaluated = 0
        self._current = 0
        self.prediction_log = prediction_log
        #: this worker's request figures (latency, errors, CPU, memory), folded into its partials
        self.serving = serving
        self._log_rows: deque[dict] = deque()
        self._log_dropped = 0
        #: seal and close checks run at most this often (or when this worker fills a window)
        self.check_interval = min(1.0, self.flush_interval * 2) if self.flush_interval else 0.0
        self._last_check = 0.0
        self._window_filled = False
        #: adds fields to a window's report before it is stored (the monitor sets it: drift impact)
        self.annotate: Callable[[dict], object] | None = None

    # -- called from the request path (cheap, thread-safe) -----------------------------
    def note_rejection(self, kind: str) -> None:
        with self._rejected_lock:
            self._rejected[kind] += 1

    # -- Consumer ------------------------------------------------------------------------
    def consume(self, items: Sequence[MonitorItem]) -> list[ClosedWindow]:
        for item in items:
            if self._pending_rows + item.n_rows > self.max_pending_rows:
                self._dropped += item.n_rows
                if self.metrics is not None:
                    self.metrics[N.M_MONITOR_DROPPED].add(item.n_rows)
                continue
            self._pending.append(item)
            self._pending_rows += item.n_rows
        if self.clock() - self._last_flush >= self.flush_interval or self._pending_rows >= self.window_rows:
            return self.flush()
        return []

    def tick(self) -> list[ClosedWindow]:
        return self.flush()

    # -- the work ------------------------------------------------------------------------
    def flush(self) -> list[ClosedWindow]:
        now = self.clock()
        self._last_flush = now
        closed: list[ClosedWindow] = []
        try:
            self._assign(now)
            self._write_log()
            self._write_partials(now)
            if now - self._last_check >= self.check_interval or self._window_filled:
                self._last_check = now
                self._window_filled = False
                self._seal_if_old(now)
                self._evaluate_ready(now, closed)
        except StoreUnavailable as exc:  # the store is down or locked: keep rows, retry next time
            self._store_errors += 1
            msg = exc.reason
            if msg != self._last_error:
                log.warning("monitor store unavailable (%s); buffering up to %d rows", msg, self.max_pending_rows)
            self._last_error = msg
            if self.metrics is not None:
                self.metrics[N.M_MONITOR_ERRORS].add(1)
            return closed
        self._last_error = None
        return closed

    def _assign(self, now: float) -> None:
        if not self._pending:
            return
        items = list(self._pending)
        total = self._pending_rows
        start = self.store.windows.reserve_rows(self._counter, total)
        self._pending.clear()
        self._pending_rows = 0
        numeric = np.concatenate([i.batch.numeric for i in items])
        codes = np.concatenate([i.batch.codes for i in items])
        times = np.concatenate([np.full(i.n_rows, i.received_at) for i in items])
        det = self.reference.detector
        mv = det.log_errors(numeric) if det is not None else None
        if self.task == "classification":
            class_codes = np.concatenate([i.class_codes for i in items])
            proba = np.concatenate([i.proba for i in items]) if all(i.proba is not None for i in items) else None
            values = None
        else:
            class_codes = proba = None
            values = np.concatenate([np.asarray(i.labels, dtype=np.float64) for i in items])
        if self.prediction_log is not None:
            rows = self.prediction_log.rows(items, start, self.window_rows)
            room = self.max_pending_rows - len(self._log_rows)
            if len(rows) > room:  # the log buffer is bounded too: drop the excess, counted
                self._log_dropped += len(rows) - max(room, 0)
                if self.metrics is not None:
                    self.metrics[N.M_MONITOR_DROPPED].add(len(rows) - max(room, 0))
                rows = rows[:max(room, 0)]
            self._log_rows.extend(rows)
        seq = start
        end = start + total
        while seq < end:
            wid = seq // self.window_rows
            stop = min(end, (wid + 1) * self.window_rows)
            a, b = seq - start, stop - start
            win = self._open.get(wid)
            if win is None:
                win = self._open[wid] = _Open(self.reference.empty_like(), float(times[a]), float(times[a]), Counter())
            win.profile.update(numeric[a:b], codes[a:b],
                               class_codes=None if class_codes is None else class_codes[a:b],
                               proba=None if proba is None else proba[a:b],
                               values=None if values is None else values[a:b],
                               mv_errors=None if mv is None else mv[a:b])
            win.first_at = min(win.first_at, float(times[a:b].min()))
            win.last_at = max(win.last_at, float(times[a:b].max()))
            win.dirty = True
            seq = stop
        if end // self.window_rows > start // self.window_rows:
            self._window_filled = True  # a window boundary passed: look for closable windows now
        self._current = max(self._current, (end - 1) // self.window_rows)

    def _write_log(self) -> None:
        if not self._log_rows:
            return
        rows = list(self._log_rows)
        self.store.outcomes.log_predictions(rows)
        self._log_rows.clear()
        if self.metrics is not None:
            self.metrics[N.M_PREDICTIONS_LOGGED].add(len(rows))

    def _write_partials(self, now: float) -> None:
        with self._rejected_lock:
            rejected, self._rejected = self._rejected, Counter()
        served = self.serving.take() if self.serving is not None else None
        if served is not None and served.empty:
            served = None
        if rejected or served is not None:
            wid = self._current
            win = self._open.get(wid)
            if win is None:
                win = self._open[wid] = _Open(self.reference.empty_like(), now, now, Counter())
            win.rejected.update(rejected)
            if served is not None:  # kept in the window even if the write below fails: sent next time
                win.serving = served if win.serving is None else win.serving.merge(served)
            win.dirty = True
        dirty = [(wid, w) for wid, w in self._open.items() if w.dirty]
        if not dirty:
            return
        try:
            self.store.windows.upsert_partials(self.model, self.worker, [
                (wid, Partial(self.worker, w.profile.rows, w.first_at, w.last_at, _sketch(w),
                              dict(w.rejected))) for wid, w in dirty], now)
        except StoreUnavailable:
            if rejected:  # keep the counts for the next try
                with self._rejected_lock:
                    self._rejected.update(rejected)
                self._open[self._current].rejected.subtract(rejected)
            raise
        for _, w in dirty:
            w.dirty = False

    def _seal_if_old(self, now: float) -> None:
        wid = self.store.windows.counter(self._counter) // self.window_rows
        self._current = max(self._current, wid)
        started = self.store.windows.open_window_started(self.model, wid)
        if started is not None and now - started >= self.window_seconds:
            rows = self.store.windows.seal(self.model, self._counter, wid, self.window_rows, now)
            if rows is not None:
                log.info("window %d sealed by time with %d rows", wid, rows)

    def _evaluate_ready(self, now: float, closed: list[ClosedWindow]) -> None:
        for wid, rows, expected in self.store.windows.closable(self.model, self.window_rows, now - self.stale_seconds,
                                                       self._current):
            if not self.store.windows.claim(self.model, wid, self.worker, now):
                self._open.pop(wid, None)
                continue
            partials = self.store.windows.partials(self.model, wid)
            merged = self.reference.empty_like()
            rejected: Counter = Counter()
            served = ServingSketch()
            for p in partials:
                merged = merged.merge(Profile.from_dict(p.sketch))
                rejected.update(p.rejected)
                served = served.merge(ServingSketch.from_dict(p.sketch.get("serving")))
            started = min((p.first_at for p in partials), default=None)
            ended = max((p.last_at for p in partials), default=None)
            report = self.evaluator.evaluate(merged, wid, rejected={k: v for k, v in rejected.items() if v},
                                             started_at=started, ended_at=ended)
            d = report.to_dict()
            attach_statistics(d, self.reference, merged, self.evaluator.schema)  # flagged features: moved how
            d["rows_expected"] = expected
            d["complete"] = rows >= expected
            d["serving"] = served.summary()
            if self.annotate is not None:
                self.annotate(d)
            if d["started_at"] is None:
                d["started_at"] = d["ended_at"] = now
            row = digest(WindowRecord(wid, "done", rows, expected, started, ended, now, d), self.evaluator.schema.names)
            if self.store.windows.finish(self.model, wid, self.worker, d, rows, expected, started, ended, now,
                                 sketch=merged.to_dict(), digest=row):
                self._evaluated += 1
                closed.append(ClosedWindow(report, rows, expected, d["serving"], d))
            self._open.pop(wid, None)
        # partials of windows another worker already closed are no longer needed
        for wid in [w for w in self._open if w < self._current and not self._open[w].dirty]:
            self._open.pop(wid, None)

    def set_reference(self, reference: Profile, evaluator: WindowEvaluator) -> None:
        """Judge windows against a new reference from now on (re-baselining). Call on the
        monitor thread; windows already open keep their sketches (their bins never change)."""
        self.reference = reference
        self.evaluator = evaluator

    def state(self) -> WindowState:
        return WindowState(self._pending_rows + len(self._log_rows), tuple(sorted(self._open)),
                           self._dropped + self._log_dropped, self._store_errors, self._last_error, self._evaluated)


def _sketch(w: _Open) -> dict:
    d = w.profile.to_dict()
    if w.serving is not None:
        d["serving"] = w.serving.to_dict()
    return d
