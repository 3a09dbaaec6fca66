"""Two-sample drift statistics on binned sketches, each with a p-value that accounts for
the sampling error of both the reference and the window.

Every statistic works on counts over the same bins (the reference profile's), so a
window is judged in O(bins) whatever its size. One function per statistic; all share the
signature ``(ref_counts, win_counts, edges=None, scale=None) -> DriftStat``.

p-values:

- ``ks``: binned Kolmogorov-Smirnov; p from the Kolmogorov distribution ``kstwo`` at the
  effective size n·m/(n+m), exactly what ``scipy.stats.ks_2samp(method="asymp")`` does
  for two samples (not the exact two-sample distribution). Binning can only lower D, so
  the p-value is conservative.
- ``chisquare``: scipy's ``chi2_contingency`` on the 2 x k table (sparse cells pooled so
  that expected counts are >= 5).
- ``psi``, ``jensenshannon``: chi-square asymptotics of the binned statistic
  (n_eff·PSI and 8·n_eff·JS-divergence are asymptotically chi-square with k-1 degrees of
  freedom) when every expected count is >= 50; otherwise the multinomial null below.
- ``wasserstein``: a two-sample multinomial bootstrap under H0 (both samples drawn from
  the reference proportions), computed once per (feature, bins, reference size, window
  size) and cached. Windows up to ``EXACT_SIZES`` rows are simulated at their own size,
  larger ones on a log grid (2^(k/8): at most 4.5 % from the true size) with the observation
  rescaled. Each feature's null has its own random stream (seeded by its key). When fewer
  than ``REFINE_BELOW`` of the ``NULL_DRAWS`` draws exceed an observation, the null is
  redrawn with ``TAIL_DRAWS`` draws; beyond their top 20 the p-value is an exponential tail fitted to
  the top 1 % (its mean excess), which overstates the lighter-than-exponential tail of
  a distance's null, so small p-values are conservative, never liberal
  (:mod:`monitoring.stats.nulls`).

Exception tree::

    ValueError   unknown method, mismatched bins
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import special as sc
from scipy import stats as ss
from scipy.spatial.distance import jensenshannon as _js

from monitoring.stats.nulls import (  # noqa: F401  (re-exported: callers build and share caches)
    EXACT_SIZES, NULL_DRAWS, TAIL_DRAWS, NullCache, exponential_tail, size_grid,
)

METHODS = ("ks", "wasserstein", "psi", "jensenshannon", "chisquare")
NUMERIC_METHODS = ("ks", "wasserstein", "psi", "jensenshannon", "chisquare")
CATEGORICAL_METHODS = ("chisquare", "psi", "jensenshannon")
_EPS = 1e-4
_MIN_EXPECTED = 5.0
#: The divergences' chi-square asymptotics are used only when every expected count is at
#: least this (they are liberal with sparse bins); below it, the cached bootstrap.
_ASYMPTOTIC_EXPECTED = 50.0
#: Largest width a bin contributes to the Wasserstein integral, in units of the scale:
#: the outer bins (reference min/max to the first/last quantile) of a heavy-tailed
#: feature would otherwise carry almost all of the width.
MAX_BIN_WIDTH = 0.5


@dataclass(frozen=True)
class DriftStat:
    method: str
    statistic: float
    p_value: float


def _props(c: np.ndarray, eps: float = _EPS) -> np.ndarray:
    p = c / max(c.sum(), 1)
    p = np.maximum(p, eps)
    return p / p.sum()


def _n_eff(n: float, m: float) -> float:
    return n * m / (n + m) if n + m else 0.0


def _check(ref: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    win = np.asarray(win, dtype=np.float64)
    if ref.shape != win.shape:
        raise ValueError(f"bins differ: reference has {ref.shape[0]}, window {win.shape[0]}")
    return ref, win


def _min_expected(ref: np.ndarray, win: np.ndarray) -> float:
    total = ref + win
    keep = total > 0
    n, m = ref.sum(), win.sum()
    pooled = total[keep] / (n + m)
    return float(min((pooled * n).min(), (pooled * m).min())) if keep.any() else 0.0


# -- statistics (vectorised over rows of ``win`` for the bootstrap) -----------------------

def _ks_stat(ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    fr = np.cumsum(ref, axis=-1) / ref.sum(axis=-1, keepdims=True)
    fw = np.cumsum(win, axis=-1) / np.maximum(win.sum(axis=-1, keepdims=True), 1)
    return np.abs(fr - fw)[..., :-1].max(axis=-1)


def _wasserstein_stat(ref: np.ndarray, win: np.ndarray, widths: np.ndarray, scale: float) -> np.ndarray:
    """Integral of |F_ref - F_win| between the outermost edges (trapezoid over the CDF
    differences known at the edges), divided by ``scale``."""
    fr = np.cumsum(ref, axis=-1) / ref.sum(axis=-1, keepdims=True)
    fw = np.cumsum(win, axis=-1) / np.maximum(win.sum(axis=-1, keepdims=True), 1)
    d = np.abs(fr - fw)[..., :-1]
    return (((d[..., :-1] + d[..., 1:]) / 2) * widths).sum(axis=-1) / scale


def _psi_stat(ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    pr = np.maximum(ref / ref.sum(axis=-1, keepdims=True), _EPS)
    pw = np.maximum(win / np.maximum(win.sum(axis=-1, keepdims=True), 1), _EPS)
    return ((pw - pr) * np.log(pw / pr)).sum(axis=-1)


def _js_divergence(ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in nats (vectorised)."""
    pr = ref / ref.sum(axis=-1, keepdims=True)
    pw = win / np.maximum(win.sum(axis=-1, keepdims=True), 1)
    m = (pr + pw) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(pr > 0, pr * np.log(pr / m), 0.0).sum(axis=-1)
        b = np.where(pw > 0, pw * np.log(pw / m), 0.0).sum(axis=-1)
    return np.maximum((a + b) / 2, 0.0)


def bin_widths(edges: np.ndarray) -> np.ndarray:
    """Widths between consecutive interior edges (the open tails carry no width)."""
    e = np.asarray(edges, dtype=np.float64)
    return np.diff(e) if e.size > 1 else np.zeros(0)


# -- tail probabilities ----------------------------------------------------------------
# scipy.stats' distribution objects check and broadcast their arguments on every call,
# which costs more than the evaluation itself here; these call the same special functions
# as their ``sf`` (``gamma._sf`` is ``gammaincc``, ``chi2._sf`` is ``chdtrc``) on the same
# standardised argument, so they return the very same values for valid parameters.

def gamma_sf(x: float, shape: float, scale: float) -> float:
    """``scipy.stats.gamma.sf(x, shape, scale=scale)`` for ``shape, scale > 0``.

    >>> gamma_sf(2.0, 3.0, 0.5) == float(ss.gamma.sf(2.0, 3.0, scale=0.5))
    True
    """
    z = float(np.float64(x) / scale)
    if math.isnan(z):
        return math.nan
    return 1.0 if z <= 0 else float(sc.gammaincc(shape, z))


def chi2_sf(x: float, df: float) -> float:
    """``scipy.stats.chi2.sf(x, df)`` for ``df > 0``.

    >>> chi2_sf(3.0, 2) == float(ss.chi2.sf(3.0, 2))
    True
    """
    x = float(x)
    if math.isnan(x):
        return math.nan
    return 1.0 if x <= 0 else float(sc.chdtrc(df, x))


_DEFAULT_NULLS = NullCache()


# -- public statistics ------------------------------------------------------------------

def ks(ref: np.ndarray, win: np.ndarray, **_) -> DriftStat:
    ref, win = _check(ref, win)
    d = float(_ks_stat(ref, win))
    en = _n_eff(ref.sum(), win.sum())
    p = float(ss.kstwo.sf(d, max(int(round(en)), 1))) if en else 1.0
    return DriftStat("ks", d, p)


def chisquare(ref: np.ndarray, win: np.ndarray, **_) -> DriftStat:
    ref, win = _check(ref, win)
    if win.sum() == 0 or ref.sum() == 0:
        return DriftStat("chisquare", 0.0, 1.0)
    ref, win = pool_bins(ref, win)
    if ref.size < 2:
        return DriftStat("chisquare", 0.0, 1.0)
    chi2, p, _, _ = ss.chi2_contingency(np.vstack([ref, win]), correction=False)
    return DriftStat("chisquare", float(chi2), float(p))


def pool_bins(ref: np.ndarray, win: np.ndarray, min_expected: float = _MIN_EXPECTED) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring bins, in their fixed order, until each has an expected count
    >= ``min_expected`` in both samples under H0 (Cochran's rule on the pooled
    proportions). Bins are never reordered by their counts, which would bias the test.
    """
    n, m = ref.sum(), win.sum()
    need = min_expected / min(n, m)  # pooled proportion a bin must reach
    props = (ref + win) / (n + m)
    groups = np.zeros(ref.size, dtype=np.int64)
    g, acc = 0, 0.0
    for i, p in enumerate(props):
        groups[i] = g
        acc += p
        if acc >= need:
            g, acc = g + 1, 0.0
    if g > 0 and (groups == g).any() and acc < need:  # a short last group joins the previous one
        groups[groups == g] = g - 1
    k = int(groups.max()) + 1
    r, w = np.bincount(groups, ref, minlength=k), np.bincount(groups, win, minlength=k)
    keep = (r + w) > 0
    return r[keep], w[keep]


def psi(ref: np.ndarray, win: np.ndarray, key: tuple = (), nulls: NullCache | None = None, **_) -> DriftStat:
    ref, win = _check(ref, win)
    value = float(_psi_stat(ref, win))
    return DriftStat("psi", value, _asymptotic_or_bootstrap(value, ref, win, _psi_stat, 1.0, ("psi", *key), nulls))


def jensenshannon(ref: np.ndarray, win: np.ndarray, key: tuple = (), nulls: NullCache | None = None, **_) -> DriftStat:
    """Statistic: JS *distance* (base 2, in [0, 1]), as Evidently reports it."""
    ref, win = _check(ref, win)
    if win.sum() == 0:
        return DriftStat("jensenshannon", 0.0, 1.0)
    dist = float(_js(ref / ref.sum(), win / win.sum(), base=2))
    div = float(_js_divergence(ref, win))
    p = _asymptotic_or_bootstrap(div, ref, win, _js_divergence, 8.0, ("js", *key), nulls)
    return DriftStat("jensenshannon", dist if math.isfinite(dist) else 0.0, p)


def _asymptotic_or_bootstrap(value, ref, win, stat, factor, key, nulls) -> float:
    n, m = ref.sum(), win.sum()
    if m == 0:
        return 1.0
    k = int(((ref + win) > 0).sum())
    if k < 2:
        return 1.0
    if _min_expected(ref, win) >= _ASYMPTOTIC_EXPECTED:
        return chi2_sf(factor * _n_eff(n, m) * value, k - 1)
    nulls = nulls or _DEFAULT_NULLS
    return nulls.p_value(key + (ref.size,), value, _props(ref), int(n), int(m), stat, power=1.0)


def robust_scale(edges: np.ndarray, counts: np.ndarray) -> float:
    """The reference's interquartile range / 1.349 (the sd for a normal feature), read off
    its binned CDF by linear interpolation between edges; NaN when the bins cannot tell
    (fewer than two edges, or the quartiles in one point mass).

    Unlike the sample sd, it is stable for heavy tails (t(2) has none) and ignores the
    few extreme values that set the reference min and max.

    >>> x = np.random.default_rng(0).normal(size=50_000)
    >>> e = np.quantile(x, np.linspace(0, 1, 31)[1:-1])
    >>> abs(robust_scale(e, np.bincount(np.searchsorted(e, x, side="right"))) - 1) < 0.03
    True
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if e.size < 2 or total <= 0 or not np.isfinite(e).all():
        return math.nan
    cdf = np.cumsum(c)[:-1] / total  # fraction of values below each edge
    if cdf[0] > 0.25 or cdf[-1] < 0.75:  # a quartile in an open tail: unknown
        return math.nan
    q1, q3 = np.interp([0.25, 0.75], cdf, e)
    iqr = float(q3 - q1)
    return iqr / 1.349 if iqr > 0 else math.nan


def capped_widths(edges: np.ndarray, scale: float) -> np.ndarray:
    """Bin widths for the Wasserstein integral, each at most ``MAX_BIN_WIDTH * scale``."""
    return np.minimum(bin_widths(edges), MAX_BIN_WIDTH * scale)


def wasserstein_effect(ref: np.ndarray, win: np.ndarray, edges: np.ndarray, scale: float) -> float:
    """The normalised, tail-capped Wasserstein distance (the numeric effect) alone."""
    scale = scale if scale and scale > 0 and math.isfinite(scale) else 1.0
    widths = capped_widths(edges, scale)
    if widths.size != np.asarray(ref).size - 2 or widths.size == 0 or np.asarray(win).sum() == 0:
        return 0.0
    return float(_wasserstein_stat(np.asarray(ref, float), np.asarray(win, float), widths, scale))


def wasserstein(ref: np.ndarray, win: np.ndarray, edges: np.ndarray | None = None, scale: float | None = None,
                key: tuple = (), nulls: NullCache | None = None, **_) -> DriftStat:
    """Wasserstein-1 distance between the binned distributions, divided by ``scale`` (the
    caller passes the reference's robust sd, :func:`robust_scale`), each bin contributing
    at most ``MAX_BIN_WIDTH * scale`` of width (:func:`capped_widths`): for a normal feature
    this is Evidently's normalised Wasserstein up to the few percent of mass beyond the
    outer quantile edges; for a heavy-tailed one the extreme reference values no longer
    swamp it."""
    ref, win = _check(ref, win)
    if edges is None:
        raise ValueError("wasserstein needs the bin edges")
    scale = scale if scale and scale > 0 and math.isfinite(scale) else 1.0
    widths = capped_widths(edges, scale)
    if widths.size != ref.size - 2 or widths.size == 0 or win.sum() == 0:
        return DriftStat("wasserstein", 0.0, 1.0)

    def stat(r, w):
        return _wasserstein_stat(r, w, widths, scale)

    value = float(stat(ref, win))
    nulls = nulls or _DEFAULT_NULLS
    p = nulls.p_value(("w", *key, ref.size, float(widths.sum()), scale), value, _props(ref), int(ref.sum()),
                      int(win.sum()), stat, power=0.5)
    return DriftStat("wasserstein", value, p)


def share_effect(ref: np.ndarray, win: np.ndarray) -> float:
    """The categorical effect: the largest Cohen's h over categories,
    |2·asin(sqrt(p_win)) - 2·asin(sqrt(p_ref))|, each category against the rest.

    h is the share change on the variance-stabilised scale, i.e. in standard deviations of
    a share's sampling noise, so 0.1 means about what 0.1 sd means for a numeric feature
    (a 0.1 sd mean shift moves the share below the median by 4 points: h = 0.08). A change
    counts more for a rare category than for a common one: 1 % -> 3 % is h = 0.15,
    50 % -> 52 % is h = 0.04, and a 10-point change is h >= 0.2 at any share.

    >>> round(share_effect(np.array([99.0, 1.0]), np.array([97.0, 3.0])), 3)
    0.148
    """
    ref = np.asarray(ref, dtype=np.float64)
    win = np.asarray(win, dtype=np.float64)
    if ref.sum() <= 0 or win.sum() <= 0:
        return 0.0
    pr, pw = ref / ref.sum(), win / win.sum()
    return float(np.abs(2 * np.arcsin(np.sqrt(pw)) - 2 * np.arcsin(np.sqrt(pr))).max())


STATISTICS: dict[str, Callable[..., DriftStat]] = {
    "ks": ks, "wasserstein": wasserstein, "psi": psi, "jensenshannon": jensenshannon, "chisquare": chisquare,
}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (step-down, monotone, capped at 1).

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out
