"""Where a ``/predict`` call runs: on the event loop, or in the worker's thread pool.

BentoML runs a sync API in a thread pool (one thread by default): every request pays a
hop to that thread and back, about 0.1 ms of the worker's CPU on this project's
benchmark machine, half of what a small scikit-learn model costs to call. Work that
short gains nothing from the thread (the GIL serialises it anyway) and loses the hop,
while work that takes long must stay off the event loop, or it would stall every other
connection of the worker (health checks and ``/metrics`` included).

:class:`InlinePolicy` decides per call. A batch runs inline when its expected CPU time
(an exponentially weighted mean of recent calls, scaled by rows) is under ``budget_s``;
otherwise, and until ``warmup`` calls have been measured, it goes to the thread pool.
CPU time, not wall time, because under load a thread's wall time is mostly waiting for
the GIL. Calls are measured on both paths, so a model that gets slower moves to the
thread pool and one that gets faster comes back. A model that waits (on I/O, a lock, a
sleep) costs little CPU yet blocks: an inline call that held the loop longer than
``block_s`` sends the next calls to the thread pool (64, then twice as many each time it
happens again, up to 65,536) before inline is tried again.
"""

from __future__ import annotations


class InlinePolicy:
    """Parameters
    ----------
    budget_s : float
        Longest expected call CPU time (seconds) run on the event loop; 0 sends every
        call to the thread pool.
    warmup : int
        Calls measured (in the thread pool) before any runs inline.
    alpha : float
        Weight of the newest call in the moving means.
    block_s : float, optional
        An inline call whose wall time exceeds this held the loop too long (default:
        ``max(10 * budget_s, 0.02)``).
    """

    __slots__ = ("budget_s", "warmup", "alpha", "block_s", "calls", "mean_s", "mean_rows",
                 "_penalty", "_backoff",
                 "inline_calls", "pool_calls", "blocked")

    def __init__(self, budget_s: float = 0.002, warmup: int = 20, alpha: float = 0.1, block_s: float | None = None):
        if budget_s < 0:
            raise ValueError(f"budget_s must be >= 0; got {budget_s}")
        self.budget_s = budget_s
        self.warmup = warmup
        self.alpha = alpha
        self.block_s = block_s if block_s is not None else max(10 * budget_s, 0.02)
        self.calls = 0
        self.mean_s = 0.0
        self.mean_rows = 1.0
        self._penalty = 0  # calls left that go to the thread pool after a blocking inline call
        self._backoff = 64
        self.inline_calls = self.pool_calls = self.blocked = 0

    def expected(self, rows: int) -> float:
        """Expected CPU seconds of a call of ``rows`` rows (linear in rows: pessimistic for
        batches, whose per-call overhead is shared)."""
        return self.mean_s * max(1.0, rows / self.mean_rows)

    def inline(self, rows: int) -> bool:
        if self.budget_s <= 0 or self.calls < self.warmup:
            return False
        if self._penalty > 0:
            self._penalty -= 1
            return False
        return self.expected(rows) < self.budget_s

    def observe(self, cpu_s: float, wall_s: float, rows: int, inline: bool) -> None:
        """Record one call (from either path; races between threads only blur the means)."""
        a = self.alpha if self.calls else 1.0
        self.calls += 1
        self.mean_s += a * (cpu_s - self.mean_s)
        self.mean_rows += a * (max(rows, 1) - self.mean_rows)
        if not inline:
            self.pool_calls += 1
            return
        self.inline_calls += 1
        if wall_s > self.block_s:
            self.blocked += 1
            self._penalty = self._backoff
            self._backoff = min(self._backoff * 2, 65536)

    def state(self) -> dict:
        """For ``/monitoring/status``."""
        return {"budget_ms": self.budget_s * 1e3, "expected_ms": round(self.expected(1) * 1e3, 4),
                "inline_calls": self.inline_calls, "thread_pool_calls": self.pool_calls,
                "blocked_loop": self.blocked}
