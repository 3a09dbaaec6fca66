"""The current monitoring window, fed from the monitor queue.

The window holds the same sketches as the reference profile (created with
:meth:`Profile.empty_like`, so the bins match) and is updated from the columnar batches
with vectorised numpy. Closing windows and judging them is the drift monitor's job.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .monitor import MonitorItem
from .profile import Profile


@dataclass(frozen=True)
class WindowSnapshot:
    rows: int
    batches: int
    opened_at: float
    last_row_at: float | None


class LiveWindow:
    """A :class:`~monitoring.monitor.Consumer` that folds batches into a window profile."""

    def __init__(self, reference: Profile, task: str):
        self._reference = reference
        self._task = task
        self._lock = threading.Lock()
        self._profile = reference.empty_like()
        self._batches = 0
        self._opened_at = time.time()
        self._last: float | None = None

    def consume(self, items: Sequence[MonitorItem]) -> None:
        if not items:
            return
        numeric = np.concatenate([i.batch.numeric for i in items]) if len(items) > 1 else items[0].batch.numeric
        codes = np.concatenate([i.batch.codes for i in items]) if len(items) > 1 else items[0].batch.codes
        class_codes = proba = values = None
        if self._task == "classification":
            class_codes = np.concatenate([i.class_codes for i in items])
            if all(i.proba is not None for i in items):
                proba = np.concatenate([i.proba for i in items])
        else:
            values = np.concatenate([i.labels for i in items]).astype(np.float64)
        with self._lock:
            self._profile.update(numeric, codes, class_codes=class_codes, proba=proba, values=values)
            self._batches += len(items)
            self._last = max(i.received_at for i in items)

    def snapshot(self) -> WindowSnapshot:
        with self._lock:
            return WindowSnapshot(self._profile.rows, self._batches, self._opened_at, self._last)

    def profile(self) -> Profile:
        """A copy of the window's profile (reading never mutates the window)."""
        with self._lock:
            return self._profile.empty_like().merge(self._profile)
