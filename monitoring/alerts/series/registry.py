"""The series registry: one :class:`Series` entry per monitored figure, registered with
:func:`register_series`, holding everything about it.

An entry carries its name (``<domain>.<figure>``), where it comes from (closed monitoring
windows or scored performance windows), what its instance label names (a feature, a class,
a metric, or nothing), its description; the conditions that apply (a calibrated band for
``outside_band``, a reference for ``relative_change``); its **observer**, from a window
report (or scored window) to one :class:`Obs` per instance; its **gauge**, the metric of
the catalogue (:data:`monitoring.metrics.DEFINITIONS`) it is exported as and how to read
the value to publish; its **PromQL form**; and whether a default rule watches it. Where an
entry has no gauge or no PromQL form it says why. ``tests/test_series.py`` walks the
registry and holds every entry to that.

Pure data and pure functions: no I/O, clocks or threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from monitoring.alerts.promexpr import PromQL
from monitoring.stats.rates import H_FLOOR

if TYPE_CHECKING:
    from monitoring.alerts.rules import RuleSpec


@dataclass(frozen=True)
class Obs:
    """One series value of one window."""

    value: float | None
    reference: float | None = None
    #: the calibrated check's verdict (None: not computable for this window)
    outside: bool | None = None
    #: the bound the check used, for the evidence (e.g. the largest acceptable count)
    bound: str | None = None
    n: int = 0


@dataclass
class RuleContext:
    """What observations need beyond the window report."""

    features: tuple[str, ...]
    classes: tuple[str, ...]
    metrics: tuple[str, ...]
    reference_rows: int
    drift_alpha: float
    error_rate: float
    #: default effect floor of rate series (Cohen's h; see :mod:`monitoring.stats.rates`)
    rate_effect_floor: float = H_FLOOR
    #: per categorical feature: (categories seen once, seen twice, values in the unseen bucket)
    #: in the reference, for the unseen-category test (missing: the test assumes none)
    reference_singletons: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ObserveContext:
    """Everything an observer may read besides the rule and the report."""

    #: the model's context (None where the source needs none: scored performance windows)
    model: RuleContext | None = None
    #: what the alert engine keeps for the rule between windows (the latency history)
    data: Mapping[str, Any] | None = None
    #: the performance :class:`~monitoring.stats.performance.Baseline` (estimated-performance band)
    baseline: Any = None


#: (rule, report, context) -> {instance: observation}; "" is the instance of a one-value series
Observer = Callable[["RuleSpec", Mapping[str, Any], ObserveContext], dict[str, Obs]]


@dataclass(frozen=True)
class Gauge:
    """How a series is exported: a metric of the catalogue and the label carrying its instance.

    ``read(report)`` gives the values to set when a closed window (a ``WindowReport`` as a
    dict) or a scored performance window is published, {instance: value}, missing values
    left out; where another part of Vigil sets the metric, ``read`` is None and ``set_by``
    names it.
    """

    metric: str
    label: str | None = None
    read: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None
    set_by: str | None = None


@dataclass(frozen=True)
class Series:
    """One monitored series: everything about it, found by its name (see the module docstring)."""

    name: str
    source: Literal["window", "performance"]
    #: what the instance label names (None: one value per window)
    label: Literal["feature", "class", "metric"] | None
    description: str
    observe: Observer
    #: the calibrated check ``outside_band`` uses (None: the series has none)
    band: str | None = None
    #: whether ``relative_change`` has a reference value to compare against
    reference: bool = False
    #: whether the band's per-window false-alarm rate is the rule's ``band_rate``
    tunable_rate: bool = False
    #: a statistic of the window's rows: windows too small to judge (``too_small``) have
    #: none, so they are neither observed nor published
    judged: bool = False
    gauge: Gauge | None = None
    no_gauge_reason: str | None = None
    promql: PromQL | None = None
    no_promql_reason: str | None = None
    #: why no default rule watches the series (None: a default rule does)
    opt_in: str | None = None
    #: the rule's state row keeps the recent windows' latency histograms (its band compares
    #: a window with them): the alert engine passes that history to the observer
    keeps_history: bool = False
    #: what the band's effect floor is measured in (None: the band has no floor a rule can set)
    floor_units: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]+\.[a-z0-9_]+", self.name):
            raise ValueError(f"series name {self.name!r} must read <domain>.<figure>")
        if (self.gauge is None) == (self.no_gauge_reason is None):
            raise ValueError(f"series {self.name}: give a gauge or no_gauge_reason, not both or neither")
        if (self.promql is None) == (self.no_promql_reason is None):
            raise ValueError(f"series {self.name}: give a promql form or no_promql_reason, not both or neither")
        if self.floor_units is not None and self.band is None:
            raise ValueError(f"series {self.name}: an effect floor needs a band")
        if self.tunable_rate and self.band is None:
            raise ValueError(f"series {self.name}: a tunable rate needs a band")


#: Every registered series, by name.
SERIES: dict[str, Series] = {}


def register_series(series: Series) -> Series:
    """Add ``series`` to the registry (a name registers once) and return it."""
    if series.name in SERIES:
        raise ValueError(f"series {series.name} is already registered")
    SERIES[series.name] = series
    return series


# -- what several observers share -------------------------------------------------------

def band_rate(rule: "RuleSpec", ctx: RuleContext) -> float:
    """The per-window false-alarm rate of the rule's band test."""
    return rule.band_rate if rule.band_rate is not None else ctx.drift_alpha


def effect_floor(rule: "RuleSpec", instance: str, default: float) -> float:
    """The rule's effect floor for ``instance``: its ``effect_floors`` entry, else its
    ``effect_floor``, else ``default``."""
    if instance in rule.effect_floors:
        return rule.effect_floors[instance]
    return rule.effect_floor if rule.effect_floor is not None else default


def rows_of(report: Mapping[str, Any]) -> int:
    """Rows in the window (0 where the report has none)."""
    return int(report.get("rows") or 0)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom  # here: scipy.stats would slow ``import monitoring.config``

    return float(binom.sf(k - 1, n, p)) if k > 0 else 1.0


def upper_count(n: int, p0: float, rate: float) -> int:
    """The largest count a binomial(n, p0) check at ``rate`` still calls normal."""
    from scipy.stats import binom  # (see binom_sf)

    return int(binom.isf(rate, n, p0)) if n else 0
