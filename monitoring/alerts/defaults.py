"""Default rules and the false-alert budget they are derived from, and the checks that tie
configured rules to the model (labels naming real features, classes and metrics).

Every model is guarded without configuration by :func:`default_rules`. Their parameters
come from a false-alert budget (``alert_false_alerts_per_week``) split evenly over the
rules: ``b`` per rule and window. The derivation (each rule's ``derivation`` string says
which applies) rests on two facts that an independence argument gets wrong:

- **Windows close on rows or time, whichever comes first.** With ``window_rows`` and an
  expected traffic (``alert_rows_per_second``) the budget counts the larger of the two
  window counts; without a rate it assumes traffic stays below ``window_rows /
  window_seconds`` rows per second (windows close by time).
- **All windows share one reference (or one validation set).** The error of the reference
  is common to every window, so "n abnormal windows in a row" has probability
  ``E[p_ref^n]``, not ``alpha^n``. :func:`consecutive_rate` bounds it semi-analytically: a
  window's statistic is a standardised difference whose correlation between windows is
  ``rho = m / (m + n)`` for windows of ``m`` rows against a reference of ``n`` (the share
  of its variance that comes from the reference); ``P(n in a row) = E_z[P(T > c | z)^n]``
  under that Gaussian one-factor model, integrated numerically. The window size used is
  ``window_rows`` (larger windows are impossible; smaller ones are less correlated), so the
  count of windows derived is an upper bound for this model. Where no count up to
  ``MAX_WINDOWS`` fits (a small reference against large windows) the derivation says how
  far over budget the rule is instead of pretending.
- Data-quality rules (``missing_share_rise``, ``new_categories``) fire on one window, their
  test run at ``b / features`` (a union bound over the features they watch, which needs no
  independence at all).

``benchmarks/calibration_quality.py`` checks the stated rates by simulation through the
whole engine (docs/calibration.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitoring.alerts.rules import RuleSpec
from monitoring.alerts.series import SERIES, RuleContext

#: The most consecutive windows a default rule waits for.
MAX_WINDOWS = 6
PERFORMANCE_MAX_WINDOWS = 3
WEEK = 7 * 24 * 3600.0


# -- default rules ---------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """The false-alert budget split over the default rules. Windows per week: by time, or
    by rows at ``rows_per_second`` when that closes them more often."""

    false_alerts_per_week: float
    window_seconds: float
    rules: int
    window_rows: int | None = None
    rows_per_second: float | None = None

    @property
    def windows_per_week(self) -> float:
        by_time = WEEK / self.window_seconds
        if self.window_rows and self.rows_per_second:
            return max(by_time, WEEK * self.rows_per_second / self.window_rows)
        return by_time

    @property
    def per_rule_window(self) -> float:
        """Largest chance, per window and rule, that a rule starts firing with nothing wrong."""
        return self.false_alerts_per_week / (self.rules * self.windows_per_week)

    def windows_needed(self, rate: float, rho: float = 0.0) -> int:
        """Consecutive windows a check with per-window false-alarm ``rate`` must be abnormal
        so that ``consecutive_rate(rate, rho, n)`` fits the per-rule budget (at most
        ``MAX_WINDOWS``; check :func:`consecutive_rate` for whether that fits)."""
        b = self.per_rule_window
        for n in range(1, MAX_WINDOWS + 1):
            if consecutive_rate(rate, rho, n) <= b * (1 + 1e-9):
                return n
        return MAX_WINDOWS


def consecutive_rate(rate: float, rho: float, n: int) -> float:
    """P(n windows in a row abnormal) for a one-sided check of per-window rate ``rate``
    whose windows' statistics are standard normal with pairwise correlation ``rho`` (shared
    reference): ``E_z[Phi((sqrt(rho) z - c) / sqrt(1 - rho))^n]``, ``c = Phi^-1(1 - rate)``."""
    import numpy as np
    from scipy.stats import norm

    if rho <= 1e-12:
        return rate ** n
    if rho >= 1 - 1e-12:
        return rate
    c = float(norm.isf(rate))
    z = np.linspace(-12.0, 12.0, 8001)
    cond = norm.logsf((c - math.sqrt(rho) * z) / math.sqrt(1 - rho))
    integrand = np.exp(n * cond + norm.logpdf(z))
    return float(min(rate, np.trapezoid(integrand, z)))


def shared_correlation(window_rows: int | None, reference_rows: int | None) -> float:
    """``m / (m + n)``: the share of a window-vs-reference difference's variance that all
    windows share (0 where either size is unknown: independent windows)."""
    if not window_rows or not reference_rows:
        return 0.0
    return window_rows / (window_rows + reference_rows)


@dataclass(frozen=True)
class DefaultContext:
    task: str
    window_seconds: float
    drift_alpha: float
    band_sigmas: float
    false_alerts_per_week: float
    multivariate: bool
    window_rows: int | None = None
    rows_per_second: float | None = None
    reference_rows: int | None = None
    validation_rows: int | None = None
    #: features the data-quality rules watch (all, and the categorical ones)
    features: int = 1
    categorical: int = 1


@dataclass(frozen=True)
class DerivedRule:
    rule: RuleSpec
    derivation: str


def _names(ctx: DefaultContext) -> list[str]:
    names = ["feature_drift", "prediction_drift", "performance_drop", "error_rate", "latency_spike",
             "missing_share_rise", "new_categories"]
    return names + ["multivariate_drift"] if ctx.multivariate else names


def budget_of(ctx: DefaultContext) -> Budget:
    return Budget(ctx.false_alerts_per_week, ctx.window_seconds, len(_names(ctx)), ctx.window_rows,
                  ctx.rows_per_second)


def performance_plan(ctx: DefaultContext) -> tuple[float, int, float]:
    """(band sigmas, consecutive windows, P(that many in a row)) for ``performance_drop``:
    the fewest windows (up to ``PERFORMANCE_MAX_WINDOWS``: scored windows come slowly) at
    ``ctx.band_sigmas`` that fit the budget given the validation set's shared error; where
    none does, the band widens instead (a shared error is not averaged away by waiting)."""
    from scipy.stats import norm

    b = budget_of(ctx).per_rule_window
    rho = shared_correlation(ctx.window_rows, ctx.validation_rows)
    k = ctx.band_sigmas
    fits = [n for n in range(1, PERFORMANCE_MAX_WINDOWS + 1)
            if consecutive_rate(float(norm.sf(k)), rho, n) <= b * (1 + 1e-9)]
    n = fits[0] if fits else PERFORMANCE_MAX_WINDOWS
    while consecutive_rate(float(norm.sf(k)), rho, n) > b * (1 + 1e-9) and k < 8:
        k = round(k + 0.05, 2)
    return k, n, consecutive_rate(float(norm.sf(k)), rho, n)


def _consecutive_text(rate: float, rho: float, n: int, b: float, what: str) -> str:
    p = consecutive_rate(rate, rho, n)
    shared = (f"windows share the {what} (correlation {rho:.2f}), so P({n} in a row) = E[p^{n}] = {p:.3g}"
              if rho > 0 else f"independent windows (no {what} size known): {rate:g}^{n} = {p:.3g}")
    verdict = "<=" if p <= b * (1 + 1e-9) else f"> (over budget x{p / b:.1f}; capped at {MAX_WINDOWS})"
    return f"{shared} {verdict} {b:.3g} -> {n} consecutive windows"


def default_rules(ctx: DefaultContext) -> list[DerivedRule]:
    """The rules every model gets, parameters derived from the false-alert budget."""
    names = _names(ctx)
    budget = budget_of(ctx)
    b = budget.per_rule_window
    by = "rows at the expected rate" if budget.windows_per_week > WEEK / ctx.window_seconds else "time"
    head = (f"budget {ctx.false_alerts_per_week:g} false alert(s)/week over {len(names)} rules at "
            f"{budget.windows_per_week:.0f} windows/week (closing by {by}) -> {b:.3g} per rule and window")
    rho = shared_correlation(ctx.window_rows, ctx.reference_rows)
    n_drift = budget.windows_needed(ctx.drift_alpha, rho)
    k_perf, n_perf, _ = performance_plan(ctx)
    rho_perf = shared_correlation(ctx.window_rows, ctx.validation_rows)
    from scipy.stats import norm

    q_perf = float(norm.sf(k_perf))
    drift_text = _consecutive_text(ctx.drift_alpha, rho, n_drift, b, "reference")
    primary = "accuracy" if ctx.task == "classification" else "mae"
    per_feature, per_cat = b / max(ctx.features, 1), b / max(ctx.categorical, 1)

    def drift_rule(name: str, series: str, description: str) -> RuleSpec:
        return RuleSpec(name=name, series=series, outside_band=True, for_windows=n_drift,
                        resolve_windows=max(2, n_drift - 1), severity="warning",
                        cooldown_seconds=n_drift * ctx.window_seconds, description=description)

    out = [
        DerivedRule(drift_rule("feature_drift", "drift.score", "A feature's distribution moved away from the reference."),
                    f"{head}; a window's drift family flags with rate <= {ctx.drift_alpha:g} (Holm); {drift_text}"),
        DerivedRule(drift_rule("prediction_drift", "prediction.drift",
                               "The distribution of the model's answers moved away from the reference."),
                    f"{head}; the prediction test has rate {ctx.drift_alpha:g}; {drift_text}"),
        DerivedRule(RuleSpec(name="performance_drop", series="performance.realized", label=primary,
                             outside_band=True, for_windows=n_perf, resolve_windows=max(2, n_perf - 1),
                             severity="critical", cooldown_seconds=n_perf * ctx.window_seconds,
                             description=f"Realized {primary} is worse than the validation baseline allows."),
                    f"{head}; a {k_perf:g}-sigma one-sided band on the difference from the baseline (validation "
                    f"and window error both counted, plus the effect floor) has rate {q_perf:.3g}; "
                    + _consecutive_text(q_perf, rho_perf, n_perf, b, "validation set")),
        DerivedRule(RuleSpec(name="error_rate", series="serving.error_rate", outside_band=True, band_rate=b,
                             for_windows=1, resolve_windows=2, severity="critical",
                             description="More requests fail on the server than the accepted error rate explains."),
                    f"{head}; binomial test at rate {b:.3g} per window -> 1 window"),
        DerivedRule(RuleSpec(name="latency_spike", series="serving.latency_p99", outside_band=True, band_rate=b,
                             for_windows=1, resolve_windows=2, severity="warning",
                             description="Requests got slower than the service's recent p99."),
                    f"{head}; binomial spike test at rate {b:.3g} per window -> 1 window"),
        DerivedRule(RuleSpec(name="missing_share_rise", series="quality.missing_rate", outside_band=True,
                             band_rate=per_feature, for_windows=1, resolve_windows=2, severity="warning",
                             description="A feature is missing far more often than in the reference "
                                         "(a broken upstream pipeline?)."),
                    f"{head}; Beta-binomial test (reference and window error) at {b:.3g} / {ctx.features} "
                    f"features = {per_feature:.3g} per feature and window, and a rise of at least the effect "
                    f"floor (Cohen's h) -> 1 window (a union bound: no independence assumed)"),
        DerivedRule(RuleSpec(name="new_categories", series="quality.unseen_rate", outside_band=True,
                             band_rate=per_cat, for_windows=1, resolve_windows=2, severity="warning",
                             description="A categorical feature shows categories the reference never had."),
                    f"{head}; Beta-binomial test against the reference's Good-Turing unseen mass at {b:.3g} / "
                    f"{ctx.categorical} categorical features = {per_cat:.3g}, and a rise of at least the effect "
                    f"floor (Cohen's h) -> 1 window (a union bound)"),
    ]
    if ctx.multivariate:
        out.append(DerivedRule(
            drift_rule("multivariate_drift", "drift.multivariate",
                       "The joint distribution of the features moved (PCA reconstruction error)."),
            f"{head}; in the drift family (rate {ctx.drift_alpha:g}); {drift_text}"))
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


@dataclass(frozen=True)
class ModelShape:
    """What the derivation needs to know of the served model (all optional)."""

    reference_rows: int | None = None
    validation_rows: int | None = None
    features: int = 1
    categorical: int = 1


def default_context(settings, task: str, multivariate: bool, shape: ModelShape = ModelShape()) -> DefaultContext:
    """The :class:`DefaultContext` of ``settings`` (a :class:`~monitoring.config.Settings`)."""
    return DefaultContext(
        task=task, window_seconds=settings.window_seconds, drift_alpha=settings.drift_alpha, band_sigmas=3.0,
        false_alerts_per_week=settings.alert_false_alerts_per_week, multivariate=multivariate,
        window_rows=settings.window_rows, rows_per_second=settings.alert_rows_per_second,
        reference_rows=shape.reference_rows, validation_rows=shape.validation_rows, features=shape.features,
        categorical=shape.categorical)


def active_rules(settings, task: str, multivariate: bool, shape: ModelShape = ModelShape()) -> list[DerivedRule]:
    """The rules a served model runs: defaults (unless ``alert_default_rules`` is off)
    merged with the configured ones. ``settings`` is a :class:`~monitoring.config.Settings`."""
    defaults = default_rules(default_context(settings, task, multivariate, shape)) \
        if settings.alert_default_rules else []
    return merge_rules(defaults, list(settings.alert_rules))
