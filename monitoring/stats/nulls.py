"""The bootstrap null distributions behind the drift p-values, cached per statistic,
feature, bins and sizes.

Invariants: a null is a pure function of its key (feature, statistic, bins), the
reference proportions and sizes, and the cache's seed, so two caches (two workers, a
prepared and a cold evaluator) give the same p-values; each key has its own random
stream, so features' nulls are independent. Tail p-values are never below what the draws
support: the base null's Monte Carlo p-value while at least ``REFINE_BELOW`` draws exceed
the observation, then ``TAIL_DRAWS`` more draws; beyond their top 20 an exponential tail
fitted to the mean excess of their top 1 %. A distance's null tail is lighter than
exponential, so the fitted tail overstates small p-values rather than understating them.

Thread-safe: entries are built outside the lock and inserted under it (two threads may
build the same entry; both are identical).
"""

from __future__ import annotations

import contextlib
import math
import threading
import zlib
from typing import Callable, Iterator

import numpy as np

NULL_DRAWS = 2000
#: Draws of the refined null when an observation is beyond all but ``REFINE_BELOW`` of the
#: base draws: the empirical p then resolves down to 1e-3; beyond, the exponential tail.
TAIL_DRAWS = 20_000
#: The base null's Monte Carlo p-value (exceed + 1) / (draws + 1) is valid at any number of
#: draws, only coarse: it is kept while at least this many draws exceed the observation
#: (p >= 3e-3 at 2,000 draws) and refined below, where Holm's first steps need resolution.
REFINE_BELOW = 5
#: Windows up to this size are simulated at their exact size (small windows are lumpy:
#: rescaling another size's null is not exact there).
EXACT_SIZES = 64


def size_grid(n: int, per_octave: int = 8) -> int:
    """A window size as simulated: exact up to ``EXACT_SIZES``, else rounded onto a log grid
    (2**(k/8)), so the null is computed once per step."""
    if n <= EXACT_SIZES:
        return max(int(n), 1)
    k = round(math.log2(n) * per_octave)
    return int(round(2 ** (k / per_octave)))


class NullCache:
    """Null distributions of a statistic under H0, keyed by bins and sizes. Thread-safe.

    An entry holds the sorted base null (``draws`` draws) and, once an observation has
    passed all but ``REFINE_BELOW`` of its draws, the top ``TAIL_KEEP`` of ``tail_draws`` more draws (only the tail
    is kept: the refined null is read only there)."""

    TAIL_KEEP = 1000

    def __init__(self, draws: int = NULL_DRAWS, seed: int = 12345, max_entries: int = 4096,
                 tail_draws: int = TAIL_DRAWS):
        self.draws = draws
        self.tail_draws = max(int(tail_draws), draws)
        self.seed = seed
        self.max_entries = max_entries
        self._cache: dict[tuple, list] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # eager_tails() is this thread's alone

    def tails(self) -> int:
        """Null distributions whose tail has been drawn too."""
        with self._lock:
            return sum(hit[1] is not None for hit in self._cache.values())

    @contextlib.contextmanager
    def eager_tails(self) -> Iterator[None]:
        """Within this block, and on this thread only, every null drawn also draws its tail
        (``tail_draws``), instead of waiting for an observation far enough out to need it:
        :meth:`~monitoring.stats.evaluate.WindowEvaluator.prepare` runs on a background thread
        so that the first drifted window is judged as fast as later ones."""
        self._local.eager = True
        try:
            yield
        finally:
            self._local.eager = False

    def entries(self) -> int:
        """Null distributions held (not ``__len__``: callers write ``nulls or default``)."""
        with self._lock:
            return len(self._cache)

    def _draw(self, key: tuple, stage: int, draws: int, ref_props: np.ndarray, n_ref: int, grid: int,
              stat: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        # each key (feature, statistic, bins) has its own stream: features' nulls are independent
        stream = zlib.crc32(repr(key).encode())
        rng = np.random.default_rng([self.seed, stream, n_ref, grid, len(ref_props), stage])
        out = []
        for start in range(0, draws, 10_000):  # bounded temporaries at large draws
            k = min(10_000, draws - start)
            r = rng.multinomial(n_ref, ref_props, size=k).astype(np.float64)
            w = rng.multinomial(grid, ref_props, size=k).astype(np.float64)
            out.append(stat(r, w))
        return np.sort(np.concatenate(out))

    def _refine(self, hit: list, key: tuple, ref_props: np.ndarray, n_ref: int, grid: int,
                stat: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, int]:
        full = self._draw(key, 1, self.tail_draws, ref_props, n_ref, grid, stat)
        hit[1], hit[2] = full[-self.TAIL_KEEP - 1:], full.size  # the cached list (idempotent: seeded)
        return hit[1], hit[2]

    def p_value(self, key: tuple, observed: float, ref_props: np.ndarray, n_ref: int, n_win: int,
                stat: Callable[[np.ndarray, np.ndarray], np.ndarray], power: float = 1.0) -> float:
        """p-value of ``observed``; ``power`` is how the statistic's null scale grows with
        the sampling variance (1/n_ref + 1/n_win): 0.5 for distances, 1 for divergences."""
        grid = size_grid(n_win)
        full_key = (key, n_ref, grid, hash(np.round(ref_props, 12).tobytes()))
        with self._lock:
            hit = self._cache.get(full_key)
        if hit is None:
            hit = [self._draw(key, 0, self.draws, ref_props, n_ref, grid, stat), None, 0]
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[full_key] = hit
        null, tail, tail_n = hit
        if tail is None and getattr(self._local, "eager", False) and self.tail_draws > self.draws:
            tail, tail_n = self._refine(hit, key, ref_props, n_ref, grid, stat)
        # the null was drawn at the grid size: rescale the observation to it
        obs = observed * ((1 / n_ref + 1 / grid) / (1 / n_ref + 1 / n_win)) ** power if n_win else observed
        exceed = len(null) - np.searchsorted(null, obs, side="left")
        if exceed >= REFINE_BELOW:
            return float(min(1.0, (exceed + 1) / (len(null) + 1)))
        if tail is None and self.tail_draws > self.draws:
            tail, tail_n = self._refine(hit, key, ref_props, n_ref, grid, stat)
        if tail is None:
            tail, tail_n = null, len(null)
        exceed = len(tail) - np.searchsorted(tail, obs, side="left")
        if exceed >= 20:
            return float((exceed + 1) / (tail_n + 1))
        return exponential_tail(tail, tail_n, obs)


def exponential_tail(top: np.ndarray, total: int, obs: float) -> float:
    """P(X >= obs) beyond the empirical tail: an exponential fitted to the mean excess of
    the top 1 % of ``total`` sorted draws (``top`` holds at least their top end). A
    distance's null tail is lighter than exponential (its mean excess shrinks with the
    threshold), so this overstates small p-values rather than understating them; it is
    never below the empirical (exceed)/(total + 1).

    >>> draws = np.sort(np.random.default_rng(0).exponential(size=20_000))
    >>> bool(0.3 < exponential_tail(draws, draws.size, 10.0) / np.exp(-10.0) < 3)
    True
    """
    k = max(20, min(total // 100, top.size - 1))
    u = float(top[-k - 1])
    beta = float((top[-k:] - u).mean())
    exceed = top.size - int(np.searchsorted(top, obs, side="left"))
    floor = exceed / (total + 1)
    if not beta > 0:
        return float(max(floor, (exceed + 1) / (total + 1)))
    return float(min(1.0, max(floor, k / (total + 1) * math.exp(-(obs - u) / beta))))


