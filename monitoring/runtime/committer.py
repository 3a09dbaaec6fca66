"""Group commit of feedback: concurrent ``/feedback`` requests share one transaction."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future


class GroupCommitter:
    """Commits concurrent feedback requests together: one transaction and one fsync for
    every request that arrived while the previous commit ran, each in its own savepoint
    (a conflicting request is rejected alone). A caller returns only once its outcomes
    are committed; if the store fails, every waiting caller gets its
    :class:`~monitoring.store.StoreUnavailable` (nothing of theirs was committed) and must
    answer 503.

    Parameters
    ----------
    store : monitoring.store.Store
    model : str
    max_group_outcomes : int
        Stop adding requests to a group past this many outcomes.
    """

    def __init__(self, store, model: str, max_group_outcomes: int = 50_000, max_waiting: int = 1024):
        self.store = store
        self.model = model
        self.max_group_outcomes = max_group_outcomes
        self._q: "queue.Queue" = queue.Queue(max_waiting)
        #: failed commits so far, and the last one's reason while commits keep failing (None
        #: once one succeeds): what ``/monitoring/status`` reports for writes
        self.errors = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="vigil-feedback-commit", daemon=True)
        self._thread.start()

    def submit(self, items, timeout: float):
        """Block until committed; returns the IngestResult or raises OutcomeConflict,
        ``TimeoutError`` or ``StoreUnavailable``."""

        fut: Future = Future()
        try:
            self._q.put((items, fut), timeout=timeout)
        except queue.Full:
            raise TimeoutError("feedback commit queue is full") from None
        res = fut.result(timeout=timeout)
        if isinstance(res, Exception):
            raise res
        return res

    def _run(self) -> None:
        while True:
            group = [self._q.get()]
            n = len(group[0][0])
            while n < self.max_group_outcomes:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                group.append(nxt)
                n += len(nxt[0])
            try:
                results = self.store.outcomes.ingest_group(self.model, [items for items, _ in group], time.time())
            except Exception as exc:  # the commit edge: every waiter learns its outcomes were not stored
                self.errors += 1
                self.last_error = getattr(exc, "reason", None) or type(exc).__name__
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.last_error = None
            for (_, fut), res in zip(group, results):
                if not fut.done():
                    fut.set_result(res)
