"""What serving looked like during a monitoring window: requests, errors, latency, CPU and
memory, so that alert rules judge them per window like drift (one evaluator, every worker
counted, no per-process view).

Each worker keeps one :class:`ServingStats` accumulator. The request path calls
:meth:`ServingStats.record` (a lock and a few integer operations); the monitor thread
takes the accumulated :class:`ServingSketch` at every flush and folds it into the worker's
partial window, so the sketch travels with the window's other sketches and is merged
exactly by the evaluator. Latency is a histogram over fixed log-spaced bounds (12 % wide),
so quantiles are exact to a bucket and histograms of different workers add up.
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from monitoring.stats.mergeable import Mergeable

#: Upper bounds of the latency buckets, seconds: 100 us .. ~150 s, ratio 1.12.
LATENCY_BOUNDS: tuple[float, ...] = tuple(1e-4 * 1.12 ** i for i in range(126))
#: How many example trace ids a window keeps per kind (slowest, failed).
EXAMPLES = 5


@dataclass
class ServingSketch(Mergeable):
    """Mergeable serving figures of one worker's share of a window (or of a whole window)."""

    requests: int = 0
    server_errors: int = 0
    client_errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    #: (seconds, trace id) of the slowest requests, slowest first
    slowest: list[tuple[float, str]] = field(default_factory=list)
    #: trace ids of requests that failed on the server
    failed: list[str] = field(default_factory=list)
    #: per worker: (sum of CPU samples in cores, number of samples, highest RSS in bytes)
    system: dict[str, tuple[float, int, float]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.requests == 0 and not self.system

    def empty_like(self) -> "ServingSketch":
        return ServingSketch()

    def merge(self, other: "ServingSketch") -> "ServingSketch":
        out = ServingSketch(self.requests + other.requests, self.server_errors + other.server_errors,
                            self.client_errors + other.client_errors,
                            [a + b for a, b in zip(self.latency, other.latency)],
                            sorted(self.slowest + other.slowest, reverse=True)[:EXAMPLES],
                            (self.failed + [t for t in other.failed if t not in self.failed])[:EXAMPLES],
                            dict(self.system))
        for w, (s, n, rss) in other.system.items():
            s0, n0, rss0 = out.system.get(w, (0.0, 0, 0.0))
            out.system[w] = (s0 + s, n0 + n, max(rss0, rss))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "server_errors": self.server_errors, "client_errors": self.client_errors,
                "latency": _sparse(self.latency), "slowest": [list(x) for x in self.slowest], "failed": self.failed,
                "system": {w: list(v) for w, v in self.system.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ServingSketch":
        if not d:
            return cls()
        lat = [0] * (len(LATENCY_BOUNDS) + 1)
        for i, c in d.get("latency", {}).items():
            lat[int(i)] = int(c)
        return cls(int(d["requests"]), int(d["server_errors"]), int(d["client_errors"]), lat,
                   [(float(s), str(t)) for s, t in d.get("slowest", [])], list(d.get("failed", [])),
                   {w: (float(v[0]), int(v[1]), float(v[2])) for w, v in d.get("system", {}).items()})

    # -- figures ---------------------------------------------------------------------
    @property
    def answered(self) -> int:
        """Requests with a latency observation (everything except client errors)."""
        return sum(self.latency)

    @property
    def error_rate(self) -> float | None:
        return self.server_errors / self.requests if self.requests else None

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile (None without requests)."""
        return quantile(self.latency, q)

    def count_above(self, seconds: float) -> int:
        """Requests slower than the bucket that holds ``seconds`` (conservative: a request
        is only counted when its whole bucket lies above)."""
        i = bisect.bisect_left(LATENCY_BOUNDS, seconds)
        return sum(self.latency[i + 1:])

    @property
    def cpu_cores(self) -> float | None:
        """Mean CPU use of the serving processes over the window, summed over workers."""
        vals = [s / n for s, n, _ in self.system.values() if n]
        return sum(vals) if vals else None

    @property
    def memory_bytes(self) -> float | None:
        """Highest RSS of each worker during the window, summed over workers."""
        return sum(rss for _, _, rss in self.system.values()) if self.system else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for the window report."""
        return {"requests": self.requests, "server_errors": self.server_errors, "client_errors": self.client_errors,
                "error_rate": self.error_rate, "latency_p50": self.quantile(0.5), "latency_p95": self.quantile(0.95),
                "latency_p99": self.quantile(0.99), "cpu_cores": self.cpu_cores, "memory_bytes": self.memory_bytes,
                "slowest_traces": [t for _, t in self.slowest], "failed_traces": list(self.failed),
                "latency": _sparse(self.latency)}


def quantile(counts: list[int], q: float) -> float | None:
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    run = 0
    for i, c in enumerate(counts):
        run += c
        if run >= rank and c:
            return LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else math.inf
    return LATENCY_BOUNDS[-1]


def pooled(histograms: Iterable[Mapping[str, int] | list[int]]) -> list[int]:
    """Sum sparse ({bucket: count}) or dense latency histograms."""
    out = [0] * (len(LATENCY_BOUNDS) + 1)
    for h in histograms:
        items = h.items() if isinstance(h, Mapping) else enumerate(h)
        for i, c in items:
            out[int(i)] += int(c)
    return out


def _sparse(counts: list[int]) -> dict[str, int]:
    return {str(i): c for i, c in enumerate(counts) if c}


class ServingStats:
    """The per-worker accumulator (thread-safe). ``record`` is called for every request to
    ``/predict``; ``take`` hands the figures gathered since the last call to the monitor."""

    def __init__(self, worker: str = "worker") -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._sketch = ServingSketch()

    def record(self, status: int, seconds: float, trace_id: str | None = None) -> None:
        i = bisect.bisect_left(LATENCY_BOUNDS, seconds)
        with self._lock:
            s = self._sketch
            s.requests += 1
            if 400 <= status < 500:
                s.client_errors += 1
                return
            s.latency[i] += 1
            if status >= 500:
                s.server_errors += 1
                if trace_id and len(s.failed) < EXAMPLES:
                    s.failed.append(trace_id)
            if trace_id and (len(s.slowest) < EXAMPLES or seconds > s.slowest[-1][0]):
                s.slowest.append((seconds, trace_id))
                s.slowest.sort(reverse=True)
                del s.slowest[EXAMPLES:]

    def note_system(self, cpu_cores: float, rss_bytes: float) -> None:
        """A CPU/RSS sample of this process (from the system sampler)."""
        with self._lock:
            s, n, rss = self._sketch.system.get(self.worker, (0.0, 0, 0.0))
            self._sketch.system[self.worker] = (s + cpu_cores, n + 1, max(rss, rss_bytes))

    def take(self) -> ServingSketch:
        with self._lock:
            out, self._sketch = self._sketch, ServingSketch()
        return out
