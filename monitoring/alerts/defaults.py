"""Default rules and the false-alert budget they are derived from, and the checks that tie
configured rules to the model (labels naming real features, classes and metrics).

Every model is guarded without configuration by :func:`default_rules`, whose
consecutive-window counts (for checks with a fixed per-window false-alarm rate) or
per-window rates (for checks whose rate can be set) are derived from a false-alert budget
(``alert_false_alerts_per_week``, at the configured window length), assuming windows are
independent under no change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitoring.alerts.rules import RuleSpec
from monitoring.alerts.series import SERIES, RuleContext

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
