"""The hand-off from the request path to the background monitor.

The request path calls :meth:`MonitorQueue.offer` once per batch: a non-blocking put
onto a bounded queue. When the queue is full (or closed) the batch is dropped and its
rows are counted, never waited on. One daemon thread per process drains the queue in
groups and hands them to a consumer; a consumer that raises is logged and counted at
this edge, and the thread keeps draining.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from monitoring import names as N
from monitoring.intake.validation import ValidatedBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonitorItem:
    """One predicted batch, columnar, as handed to the monitor."""

    request_id: str
    received_at: float
    batch: ValidatedBatch
    labels: np.ndarray
    proba: np.ndarray | None
    class_codes: np.ndarray | None
    trace_id: str | None = None
    client_request_id: str | None = None

    @property
    def n_rows(self) -> int:
        return self.batch.n_rows


class Consumer(Protocol):
    """Receives drained items; may also define ``tick()``, called when the queue is idle."""

    def consume(self, items: Sequence[MonitorItem]) -> None: ...


@dataclass(frozen=True)
class QueueStats:
    capacity: int
    depth: int
    enqueued_rows: int
    dropped_rows: int
    processed_rows: int
    errors: int
    running: bool


_STOP = object()


class MonitorQueue:
    """Bounded, non-blocking hand-off with a draining thread.

    Parameters
    ----------
    consumer : Consumer
        Receives lists of up to ``max_drain`` items on the monitor thread.
    maxsize : int
        Capacity in batches.
    metrics : monitoring.metrics.Metrics, optional
        Where enqueue/drop/processed counts and the depth gauge go.
    """

    def __init__(self, consumer: Consumer, maxsize: int = 4096, metrics=None, max_drain: int = 256,
                 tick_seconds: float = 0.5, linger: float = 0.05):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1; got {maxsize}")
        if max_drain < 1:
            raise ValueError(f"max_drain must be >= 1; got {max_drain}")
        self._consumer = consumer
        self._q: queue.Queue = queue.Queue(maxsize)
        self._capacity = maxsize
        self._max_drain = max_drain
        self._tick_seconds = tick_seconds
        #: after the first item, wait this long so a burst is drained in one go (fewer wake-ups)
        self._linger = linger
        self._tick = getattr(consumer, "tick", None)
        self._metrics = metrics
        self._closed = False
        self._thread: threading.Thread | None = None
        self._counts_lock = threading.Lock()
        self._enqueued = self._dropped = self._processed = self._errors = 0

    # -- request path ----------------------------------------------------------------
    def offer(self, item: MonitorItem) -> bool:
        """Enqueue without blocking. Returns False (and counts the drop) if full or closed."""
        n = item.n_rows
        if not self._closed:
            try:
                self._q.put_nowait(item)
            except queue.Full:
                pass
            else:
                with self._counts_lock:
                    self._enqueued += n
                if self._metrics is not None:
                    self._metrics[N.M_MONITOR_ENQUEUED].add(n)
                return True
        with self._counts_lock:
            self._dropped += n
        if self._metrics is not None:
            self._metrics[N.M_MONITOR_DROPPED].add(n)
        return False

    # -- background ------------------------------------------------------------------
    def start(self) -> "MonitorQueue":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-monitor", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        stop = False
        last_tick = time.monotonic()
        while not stop:
            try:
                item = self._q.get(timeout=self._tick_seconds)
            except queue.Empty:
                item = None
            if self._tick is not None and time.monotonic() - last_tick >= self._tick_seconds:
                last_tick = time.monotonic()
                self._guarded(self._tick, 0)
            if item is None:
                continue
            if self._linger and item is not _STOP and self._q.qsize() < self._max_drain:
                time.sleep(self._linger)
            items = []
            if item is _STOP:
                stop = True
            else:
                items.append(item)
            while len(items) < self._max_drain:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    continue
                items.append(nxt)
            if items:
                self._deliver(items)
            if self._metrics is not None:
                self._metrics[N.M_MONITOR_QUEUE_DEPTH].set(self._q.qsize())
        if self._tick is not None:  # a last flush of what was drained
            self._guarded(self._tick, 0)

    def _guarded(self, fn, rows: int, *args) -> None:
        try:
            fn(*args)
        except Exception:  # the consumer is the edge: log, count, keep draining
            log.exception("monitor consumer failed (%d rows)", rows)
            with self._counts_lock:
                self._errors += 1
            if self._metrics is not None:
                self._metrics[N.M_MONITOR_ERRORS].add(1)

    def _deliver(self, items: list[MonitorItem]) -> None:
        rows = sum(i.n_rows for i in items)
        self._guarded(self._consumer.consume, rows, items)
        with self._counts_lock:
            self._processed += rows
        if self._metrics is not None:
            self._metrics[N.M_MONITOR_PROCESSED].add(rows)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting, drain what is queued (bounded by ``timeout``). True if drained."""
        self._closed = True
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._q.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def stats(self) -> QueueStats:
        with self._counts_lock:
            return QueueStats(self._capacity, self._q.qsize(), self._enqueued, self._dropped, self._processed,
                              self._errors, self._thread is not None and self._thread.is_alive())
