"""Tests and effect sizes for rates: a window's count of missing values, out-of-range
values, unseen categories or one predicted class, judged against a reference that is itself
a finite sample.

No test here treats the reference's rate as exact: each counts the reference's sampling
error as well as the window's.

- missing share, class share: both are counts of the same kind in two samples, so the
  test is Fisher's exact test (the window's count given the two samples' total is
  hypergeometric under no change: exact, conservative through discreteness, and right
  when the reference saw none or a handful, where a Beta predictive is liberal);
- out-of-range share: exact under no change for a continuous feature. The reference range
  is [min, max] of ``n`` reference values, whose outside mass is Beta(2, n - 1) (order
  statistics), so the window's count is Beta-binomial(m, 2, n - 1): about 2/(n + 1) per
  value, varying with the reference. Ties at the extremes (discrete features) only make
  values outside the range rarer, so the test stays conservative there;
- unseen categories: the chance that a new value is a category the reference never showed
  is the reference's *missing mass*, estimated by Good-Turing as (singletons)/n; we use
  a Beta with that mean (plus ``u``, values already in the reference's unseen bucket when a
  window was adopted as the reference) and the estimator's variance ``(f1 + 2 f2)/n^2``
  (``f2``: categories seen twice).

The effect floor is on Cohen's h (and the change must be significantly larger than half of
it: :func:`beyond_floor`), ``2 asin(sqrt(p)) - 2 asin(sqrt(p0))``, the difference
on the scale where a proportion's sampling sd is ``1/sqrt(n)`` whatever ``p`` is: it is the
rate counterpart of an effect in sd units (the numeric drift floor), and it makes a move
from 1 % to 3 % (h = 0.15) matter while 50 % to 52 % (h = 0.04) does not. ``H_FLOOR``
(0.1) is a rise of 0.25 points from zero, 1.2 from 1 %, 2.4 from 5 %, 3.2 from 10 %, 4.1
from 20 % and 5 from 50 %. See docs/thresholds.md.

Pure functions; scipy is imported inside them (``import monitoring.config`` stays fast).
"""

from __future__ import annotations

import math

#: Default effect floor for rates, in Cohen's h.
H_FLOOR = 0.1


def cohens_h(p: float, p0: float) -> float:
    """Signed Cohen's h of ``p`` against ``p0`` (both clipped to [0, 1])."""
    def phi(x: float) -> float:
        return 2.0 * math.asin(math.sqrt(min(max(x, 0.0), 1.0)))
    return phi(p) - phi(p0)


def beyond_floor(h: float, floor: float, m: int, n_ref: float, rate: float) -> bool:
    """Whether a change of Cohen's ``h`` (window of ``m`` rows against a reference worth
    ``n_ref`` rows) clears the effect floor: at least ``floor``, AND significantly larger
    than half of it (a minimum-effect test on the arcsine scale, where each side's sampling
    variance is 1/size: ``(h - floor/2) / sqrt(1/m + 1/n_ref) >= Phi^-1(1 - rate)``).

    The second part keeps near-nulls quiet: any change below half the floor (50 % -> 52 %,
    h = 0.04) passes at most at ``rate`` however the window's noise falls, whereas "the
    point estimate is above the floor" alone fired on 0.3 % of 1,000-row windows there (40x
    the budget). Testing against the whole floor would guarantee that for every change below
    it, but costs most of the power on 1,000-row windows (50 % -> 60 % caught in 15-22 % of
    them instead of 65-78 %); half the floor is the compromise, measured in docs/calibration.md."""
    from scipy.stats import norm

    if m <= 0 or n_ref <= 0 or h < floor:
        return False
    return (h - floor / 2) / math.sqrt(1.0 / m + 1.0 / n_ref) >= float(norm.isf(rate))


def share_prior(r: float, n: float) -> tuple[float, float]:
    """Jeffreys' Beta for a rate seen ``r`` times in ``n`` reference rows."""
    r = min(max(r, 0.0), n)
    return r + 0.5, n - r + 0.5


def fisher_rise_pvalue(k: int, m: int, r: int, n: int) -> float:
    """One-sided Fisher exact p-value that ``k`` of ``m`` window rows against ``r`` of ``n``
    reference rows is a rise: P(K >= k) for K ~ Hypergeometric(n + m, r + k, m)."""
    from scipy.stats import hypergeom

    if k <= 0 or m <= 0:
        return 1.0
    return float(hypergeom.sf(k - 1, n + m, r + k, m))


def fisher_two_sided(k: int, m: int, r: int, n: int) -> float:
    """Twice the smaller one-sided Fisher exact p-value (capped at 1)."""
    from scipy.stats import hypergeom

    if m <= 0:
        return 1.0
    lower = float(hypergeom.cdf(k, n + m, r + k, m))
    return min(1.0, 2.0 * min(lower, fisher_rise_pvalue(k, m, r, n)))


def out_of_range_prior(n: int) -> tuple[float, float]:
    """Beta of the probability mass outside [min, max] of ``n`` continuous reference values."""
    return 2.0, max(float(n) - 1.0, 1.0)


def unseen_prior(once: int, twice: int, unseen: int, n: int) -> tuple[float, float]:
    """Beta of the chance that a value falls in a category the reference never showed:
    mean ``(f1 + u + 1) / (n + 1)`` (Good-Turing), variance ``(f1 + 2 f2 + u + 1) / n^2``
    (the Good-Turing estimator's own variance: a reference that missed a category of middling
    frequency has few singletons to show for it), matched by moments."""
    n = max(int(n), 1)
    mean = min((once + unseen + 1.0) / (n + 1.0), 0.999)
    var = (once + 2.0 * twice + unseen + 1.0) / float(n) ** 2
    size = max(mean * (1 - mean) / min(var, mean * (1 - mean) * 0.999) - 1.0, 1e-3)
    return mean * size, (1 - mean) * size


def prior_mean(prior: tuple[float, float]) -> float:
    a, b = prior
    return a / (a + b)


def rise_pvalue(k: int, m: int, prior: tuple[float, float]) -> float:
    """P(K >= k) for K ~ Beta-binomial(m, a, b): the chance of ``k`` or more of ``m``
    window rows with nothing changed."""
    from scipy.stats import betabinom

    if k <= 0 or m <= 0:
        return 1.0
    return float(betabinom.sf(k - 1, m, *prior))


def two_sided_pvalue(k: int, m: int, prior: tuple[float, float]) -> float:
    """Twice the smaller tail of Beta-binomial(m, a, b) at ``k`` (capped at 1)."""
    from scipy.stats import betabinom

    if m <= 0:
        return 1.0
    lower = float(betabinom.cdf(k, m, *prior))
    upper = rise_pvalue(k, m, prior)
    return min(1.0, 2.0 * min(lower, upper))


def upper_count(m: int, prior: tuple[float, float], rate: float) -> int:
    """The largest window count of ``m`` the one-sided test at ``rate`` still calls normal."""
    from scipy.stats import betabinom

    return int(betabinom.isf(rate, m, *prior)) if m else 0


def floor_count(m: int, p0: float, h: float) -> int:
    """The smallest count of ``m`` whose rate is at least Cohen's ``h`` above ``p0``."""
    target = math.sin(min(math.pi / 2, math.asin(math.sqrt(min(max(p0, 0.0), 1.0))) + h / 2)) ** 2
    return min(m, math.ceil(target * m - 1e-9))
