"""Alert rules over the monitored series, and the alert state machine.

A rule watches one *series* (a per-window figure: a feature's drift score, the error rate,
realized accuracy...) and fires when its *condition* holds for enough consecutive windows
(and, optionally, for long enough); it resolves after enough clean windows. Conditions:

- ``above: x`` / ``below: x``: the value crosses a fixed threshold;
- ``outside_band: true``: the series' own calibrated check says the window is abnormal
  (a drift test's Holm-adjusted verdict, the realized metric outside its bootstrap band,
  a binomial test of the error count against the accepted error rate, ...);
- ``relative_change: r`` (with ``direction``): ``|value - reference| / |reference| > r``
  against the reference profile's value (or the validation baseline for performance).

State per (model, rule, instance): ``inactive -> pending -> firing -> resolved``, where an
*instance* is the feature, class or metric the value belongs to (a per-feature rule has
one alert per feature). :func:`step` is the pure transition function; the
:class:`~monitoring.alert_engine.AlertEngine` runs it for every closed window and keeps
the state in the store.

Default rules: every model is guarded without configuration by :func:`default_rules`,
whose consecutive-window counts (for checks with a fixed per-window false-alarm rate) or
per-window rates (for checks whose rate can be set) are derived from a false-alert budget
(``alert_false_alerts_per_week``, at the configured window length), assuming windows are
independent under no change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["info", "warning", "critical"]
State = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True)
class SeriesDef:
    name: str
    source: Literal["window", "performance"]
    #: what the instance label names (None: one value per window)
    label: Literal["feature", "class", "metric"] | None
    description: str
    #: the calibrated check ``outside_band`` uses (None: the series has none)
    band: str | None = None
    #: whether ``relative_change`` has a reference value to compare against
    reference: bool = False
    #: whether the band's per-window false-alarm rate is the rule's ``band_rate``
    tunable_rate: bool = False


_SERIES = (
    SeriesDef("drift.score", "window", "feature", "per-feature drift score (>= 1: flagged)",
              "flagged: Holm-adjusted p <= drift_alpha and effect >= drift_effect_floor"),
    SeriesDef("drift.share", "window", None, "share of features flagged in the window"),
    SeriesDef("drift.multivariate", "window", None, "multivariate (PCA reconstruction) drift score",
              "flagged in the same Holm family as the features"),
    SeriesDef("quality.missing_rate", "window", "feature", "share of missing values",
              "binomial test of the missing count against the reference rate, at band_rate", True, True),
    SeriesDef("quality.out_of_range_rate", "window", "feature", "share of values outside the reference range",
              "binomial test against 1/(reference rows + 1), at band_rate", True, True),
    SeriesDef("quality.unseen_rate", "window", "feature", "share of categories unseen in the reference",
              "binomial test against 1/(reference rows + 1), at band_rate", True, True),
    SeriesDef("prediction.class_share", "window", "class", "share of each predicted class",
              "two-sided binomial test against the reference share, at band_rate", True, True),
    SeriesDef("prediction.confidence", "window", None, "mean top-class probability", None, True),
    SeriesDef("prediction.drift", "window", None, "p-value of the prediction-distribution test",
              "p <= drift_alpha (chi-square on the class mix, KS on regression outputs)"),
    SeriesDef("prediction.mean", "window", None, "mean prediction (regression)", None, True),
    SeriesDef("prediction.variance", "window", None, "prediction variance (regression)", None, True),
    SeriesDef("serving.error_rate", "window", None, "share of /predict requests that failed on the server",
              "binomial test of the failures against alert_error_rate, at band_rate", True, True),
    SeriesDef("serving.latency_p50", "window", None, "median /predict latency, seconds",
              "spike: more requests slower than the recent p99 than chance allows (binomial, at band_rate) "
              "and at least 5 % of them", True, True),
    SeriesDef("serving.latency_p95", "window", None, "95th percentile /predict latency, seconds",
              "latency spike test (see serving.latency_p50)", True, True),
    SeriesDef("serving.latency_p99", "window", None, "99th percentile /predict latency, seconds",
              "latency spike test (see serving.latency_p50)", True, True),
    SeriesDef("system.cpu", "window", None, "CPU used by the serving processes, cores (mean over the window)"),
    SeriesDef("system.memory", "window", None, "resident memory of the serving processes, bytes (peak)"),
    SeriesDef("performance.realized", "performance", "metric", "realized metric of a window once its labels are in",
              "outside the validation baseline's bootstrap band on the worse side", True),
    SeriesDef("performance.estimated", "performance", "metric", "label-free (CBPE) estimate of a metric",
              "estimate outside the validation baseline's band on the worse side", True),
    SeriesDef("label.coverage", "performance", None, "share of a window's predictions with an outcome, once final",
              None, True),
)
SERIES: dict[str, SeriesDef] = {s.name: s for s in _SERIES}
SeriesName = Literal[tuple(SERIES)]  # type: ignore[valid-type]


class RuleSpec(BaseModel):
    """One alert rule, as written in the YAML config (``alert_rules``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    series: SeriesName
    label: str | None = Field(None, description="feature, class or metric (None: every one, where the series has them)")
    above: float | None = None
    below: float | None = None
    outside_band: bool | None = None
    relative_change: float | None = Field(None, gt=0)
    direction: Literal["up", "down", "both"] = "both"
    band_rate: float | None = Field(None, gt=0, lt=0.5, description="per-window false-alarm rate of the band test")
    for_windows: int = Field(1, ge=1, le=1000)
    for_seconds: float = Field(0.0, ge=0)
    resolve_windows: int = Field(1, ge=1, le=1000)
    severity: Severity = "warning"
    cooldown_seconds: float = Field(0.0, ge=0)
    repeat_seconds: float | None = Field(None, gt=0, description="re-notify a firing, unacknowledged alert this often")
    enabled: bool = True
    description: str | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> "RuleSpec":
        given = [k for k in ("above", "below", "outside_band", "relative_change") if getattr(self, k) is not None]
        if self.enabled and len(given) != 1:
            raise ValueError(f"rule {self.name!r}: give exactly one condition of above, below, outside_band, "
                             f"relative_change (got {', '.join(given) or 'none'})")
        s = SERIES[self.series]
        if self.outside_band is not None and s.band is None:
            raise ValueError(f"rule {self.name!r}: series {self.series} has no calibrated band; use above/below")
        if self.outside_band is False:
            raise ValueError(f"rule {self.name!r}: outside_band must be true when given")
        if self.relative_change is not None and not s.reference:
            raise ValueError(f"rule {self.name!r}: series {self.series} has no reference value for relative_change")
        if self.band_rate is not None and not s.tunable_rate:
            raise ValueError(f"rule {self.name!r}: series {self.series}'s band has a fixed rate; band_rate does not apply")
        if s.label is None and self.label is not None:
            raise ValueError(f"rule {self.name!r}: series {self.series} has no {self.label!r}; remove label")
        if s.label == "metric" and self.label is None:
            raise ValueError(f"rule {self.name!r}: series {self.series} needs label: the metric (e.g. accuracy)")
        return self

    def condition_text(self) -> str:
        if self.above is not None:
            return f"{self.series} > {self.above:g}"
        if self.below is not None:
            return f"{self.series} < {self.below:g}"
        if self.relative_change is not None:
            sign = {"up": "+", "down": "-", "both": "+/-"}[self.direction]
            return f"{self.series} changes by {sign}{self.relative_change:.0%} from the reference"
        return f"{self.series} outside its band ({SERIES[self.series].band})"


class WebhookSpec(BaseModel):
    """A webhook sink: alert notifications POSTed as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,50}$")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(5.0, gt=0, le=120)
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or any(ch in k for ch in " :\r\n") or any(ch in val for ch in "\r\n"):
                raise ValueError(f"invalid header {k!r}")
        return v


# -- observations --------------------------------------------------------------------

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


def evaluate_condition(rule: RuleSpec, obs: Obs) -> bool | None:
    """True (abnormal), False (normal) or None (no data: neither counts)."""
    if rule.outside_band:
        return obs.outside
    v = obs.value
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if rule.above is not None:
        return v > rule.above
    if rule.below is not None:
        return v < rule.below
    ref = obs.reference
    if ref is None or not math.isfinite(ref):
        return None
    delta = v - ref
    if rule.direction == "up" and delta <= 0 or rule.direction == "down" and delta >= 0:
        return False
    if ref == 0:
        return delta != 0
    return abs(delta) / abs(ref) > rule.relative_change


# -- state machine -------------------------------------------------------------------

@dataclass(frozen=True)
class AlertState:
    state: State = "inactive"
    bad: int = 0                      # consecutive abnormal windows
    good: int = 0                     # consecutive normal windows while firing
    pending_since: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    last_window: int = -1
    seq: int = 0                      # transitions to firing/resolved so far
    value: float | None = None


@dataclass(frozen=True)
class Transition:
    to: Literal["firing", "resolved"]
    seq: int


def step(rule: RuleSpec, st: AlertState, abnormal: bool | None, window_id: int, window_start: float,
         window_end: float, now: float, value: float | None = None) -> tuple[AlertState, Transition | None]:
    """Advance one alert by one window. Windows at or before ``last_window`` are ignored
    (each window counts once, whichever worker reports it)."""
    if window_id <= st.last_window:
        return st, None
    st = replace(st, last_window=window_id, value=value if value is not None else st.value)
    if abnormal is None:
        return st, None
    if abnormal:
        st = replace(st, bad=st.bad + 1, good=0)
        if st.state in ("inactive", "resolved"):
            st = replace(st, state="pending", pending_since=window_start)
        if st.state == "pending":
            long_enough = window_end - (st.pending_since if st.pending_since is not None else window_start) \
                >= rule.for_seconds
            cooled = st.fired_at is None or now - st.fired_at >= rule.cooldown_seconds
            if st.bad >= rule.for_windows and long_enough and cooled:
                st = replace(st, state="firing", fired_at=now, seq=st.seq + 1)
                return st, Transition("firing", st.seq)
        return st, None
    st = replace(st, bad=0)
    if st.state == "pending":
        return replace(st, state="inactive", pending_since=None, good=0), None
    if st.state == "firing":
        st = replace(st, good=st.good + 1)
        if st.good >= rule.resolve_windows:
            st = replace(st, state="resolved", resolved_at=now, good=0, pending_since=None, seq=st.seq + 1)
            return st, Transition("resolved", st.seq)
    return st, None


# -- default rules ---------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """The false-alert budget split over the default rules."""

    false_alerts_per_week: float
    window_seconds: float
    rules: int

    @property
    def windows_per_week(self) -> float:
        return 7 * 24 * 3600 / self.window_seconds

    @property
    def per_rule_window(self) -> float:
        """Largest chance, per window and rule, that a rule starts firing with nothing wrong."""
        return self.false_alerts_per_week / (self.rules * self.windows_per_week)

    def windows_needed(self, rate: float) -> int:
        """Consecutive windows a check with per-window false-alarm ``rate`` must be
        abnormal so that ``rate ** n`` fits the per-rule budget."""
        b = self.per_rule_window
        if rate <= b:
            return 1
        return max(1, math.ceil(math.log(b) / math.log(rate) - 1e-9))


@dataclass(frozen=True)
class DefaultContext:
    task: str
    window_seconds: float
    drift_alpha: float
    band_sigmas: float
    false_alerts_per_week: float
    multivariate: bool


@dataclass(frozen=True)
class DerivedRule:
    rule: RuleSpec
    derivation: str


def default_rules(ctx: DefaultContext) -> list[DerivedRule]:
    """The rules every model gets, parameters derived from the false-alert budget."""
    from scipy.stats import norm

    names = ["feature_drift", "prediction_drift", "performance_drop", "error_rate", "latency_spike"]
    if ctx.multivariate:
        names.append("multivariate_drift")
    budget = Budget(ctx.false_alerts_per_week, ctx.window_seconds, len(names))
    b = budget.per_rule_window
    head = (f"budget {ctx.false_alerts_per_week:g} false alert(s)/week over {len(names)} rules at "
            f"{budget.windows_per_week:.0f} windows/week -> {b:.3g} per rule and window")
    n_drift = budget.windows_needed(ctx.drift_alpha)
    q_perf = float(norm.sf(ctx.band_sigmas))
    n_perf = budget.windows_needed(q_perf)
    primary = "accuracy" if ctx.task == "classification" else "mae"
    out = [
        DerivedRule(RuleSpec(name="feature_drift", series="drift.score", outside_band=True, for_windows=n_drift,
                             resolve_windows=max(2, n_drift - 1), severity="warning",
                             cooldown_seconds=n_drift * ctx.window_seconds,
                             description="A feature's distribution moved away from the reference."),
                    f"{head}; a window's drift family flags with rate <= {ctx.drift_alpha:g} (Holm), "
                    f"{ctx.drift_alpha:g}^{n_drift} <= {b:.3g} -> {n_drift} consecutive windows"),
        DerivedRule(RuleSpec(name="prediction_drift", series="prediction.drift", outside_band=True,
                             for_windows=n_drift, resolve_windows=max(2, n_drift - 1), severity="warning",
                             cooldown_seconds=n_drift * ctx.window_seconds,
                             description="The distribution of the model's answers moved away from the reference."),
                    f"{head}; the prediction test has rate {ctx.drift_alpha:g} -> {n_drift} consecutive windows"),
        DerivedRule(RuleSpec(name="performance_drop", series="performance.realized", label=primary,
                             outside_band=True, for_windows=n_perf, resolve_windows=max(2, n_perf - 1),
                             severity="critical", cooldown_seconds=n_perf * ctx.window_seconds,
                             description=f"Realized {primary} is worse than the validation baseline allows."),
                    f"{head}; a {ctx.band_sigmas:g}-sigma one-sided band has rate {q_perf:.3g} -> "
                    f"{n_perf} consecutive scored windows"),
        DerivedRule(RuleSpec(name="error_rate", series="serving.error_rate", outside_band=True, band_rate=b,
                             for_windows=1, resolve_windows=2, severity="critical",
                             description="More requests fail on the server than the accepted error rate explains."),
                    f"{head}; binomial test at rate {b:.3g} per window -> 1 window"),
        DerivedRule(RuleSpec(name="latency_spike", series="serving.latency_p99", outside_band=True, band_rate=b,
                             for_windows=1, resolve_windows=2, severity="warning",
                             description="Requests got slower than the service's recent p99."),
                    f"{head}; binomial spike test at rate {b:.3g} per window -> 1 window"),
    ]
    if ctx.multivariate:
        out.append(DerivedRule(
            RuleSpec(name="multivariate_drift", series="drift.multivariate", outside_band=True, for_windows=n_drift,
                     resolve_windows=max(2, n_drift - 1), severity="warning",
                     cooldown_seconds=n_drift * ctx.window_seconds,
                     description="The joint distribution of the features moved (PCA reconstruction error)."),
            f"{head}; in the drift family (rate {ctx.drift_alpha:g}) -> {n_drift} consecutive windows"))
    return out


def merge_rules(defaults: list[DerivedRule], configured: list[RuleSpec]) -> list[DerivedRule]:
    """Configured rules override a default rule of the same name (``enabled: false``
    switches one off); the others are added."""
    by_name = {d.rule.name: d for d in defaults}
    for r in configured:
        by_name[r.name] = DerivedRule(r, "configured")
    return [d for d in by_name.values() if d.rule.enabled]


@dataclass
class RuleContext:
    """What observations need beyond the window report."""

    features: tuple[str, ...]
    classes: tuple[str, ...]
    metrics: tuple[str, ...]
    reference_rows: int
    drift_alpha: float
    error_rate: float


#: The metrics a ``performance.*`` rule may name, per task (what ``window_performance`` reports).
TASK_METRICS = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
                "regression": ("mse", "rmse", "mae", "r2", "mape")}


def check_labels(rules: list[DerivedRule], ctx: RuleContext) -> None:
    """A rule's label must name something the model has."""
    for d in rules:
        r = d.rule
        kind = SERIES[r.series].label
        if r.label is None or kind is None:
            continue
        known = {"feature": ctx.features, "class": ctx.classes, "metric": ctx.metrics}[kind]
        if r.label not in known:
            raise ValueError(f"rule {r.name!r}: unknown {kind} {r.label!r}; known: {', '.join(known)}")


def active_rules(settings, task: str, multivariate: bool) -> list[DerivedRule]:
    """The rules a served model runs: defaults (unless ``alert_default_rules`` is off)
    merged with the configured ones. ``settings`` is a :class:`~monitoring.config.Settings`."""
    defaults = default_rules(DefaultContext(
        task=task, window_seconds=settings.window_seconds, drift_alpha=settings.drift_alpha, band_sigmas=3.0,
        false_alerts_per_week=settings.alert_false_alerts_per_week, multivariate=multivariate)) \
        if settings.alert_default_rules else []
    return merge_rules(defaults, list(settings.alert_rules))
