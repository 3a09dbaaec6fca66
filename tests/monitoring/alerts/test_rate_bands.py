"""The bands of rate series (missing, out-of-range, unseen, class share) and of realized
performance: a test that counts the reference's (or validation set's) sampling error as
well as the window's, and an effect floor, with per-feature overrides."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from monitoring.alerts import RuleContext, RuleSpec
from monitoring.alerts.observers import observe_window
from monitoring.stats import rates as R
from monitoring.stats.performance import Baseline, PerformanceConfig

CTX = RuleContext(features=("a", "b", "c"), classes=("0", "1"), metrics=("accuracy",), reference_rows=5000,
                  drift_alpha=0.01, error_rate=0.01)
MISSING = RuleSpec(name="m", series="quality.missing_rate", outside_band=True, band_rate=1e-4)


def _quality(rows: int, ref_rows: int, **features: tuple[float, float]) -> dict:
    """A window report whose features have (window missing share, reference missing share)."""
    return {"rows": rows, "reference_rows": ref_rows, "too_small": False,
            "quality": [{"feature": f, "missing_rate": w, "reference_missing_rate": r, "out_of_range_rate": None,
                         "unseen_rate": None} for f, (w, r) in features.items()]}


def _flags(rule: RuleSpec, report: dict, ctx: RuleContext = CTX) -> dict[str, bool]:
    return {k: o.outside for k, o in observe_window(rule, report, ctx).items()}


def test_a_missing_share_doubling_is_flagged_and_sampling_noise_is_not():
    assert _flags(MISSING, _quality(1000, 5000, a=(0.22, 0.10), b=(0.115, 0.10))) == {"a": True, "b": False}


def test_a_tiny_rise_in_a_huge_window_is_significant_but_below_the_floor():
    # +1 point on 10 % at 20,000 rows against 50,000: p ~ 1e-4, Cohen's h 0.03 < 0.1
    report = _quality(20_000, 50_000, a=(0.112, 0.10))
    assert R.fisher_rise_pvalue(2240, 20_000, 5000, 50_000) < 1e-4
    assert _flags(MISSING, report) == {"a": False}
    no_floor = MISSING.model_copy(update={"effect_floor": 0.0})
    assert _flags(no_floor, report) == {"a": True}


def test_the_reference_sampling_error_is_counted():
    # 6.5 % against a 300-row reference at 5 %: a binomial test against 5 % as exact flags it
    # (p ~ 1e-11 at 20,000 rows); the reference's own error (sd 1.3 points) explains it
    from scipy.stats import binom

    assert binom.sf(1300 - 1, 20_000, 0.05) < 1e-10
    report = _quality(20_000, 300, a=(0.065, 0.05))
    assert _flags(MISSING.model_copy(update={"effect_floor": 0.0}), report) == {"a": False}


def test_per_feature_floors_override_the_rule_floor_and_the_default():
    rule = MISSING.model_copy(update={"effect_floors": {"a": 0.5}})
    report = _quality(1000, 5000, a=(0.22, 0.10), b=(0.22, 0.10))
    assert _flags(rule, report) == {"a": False, "b": True}
    strict = RuleContext(**{**CTX.__dict__, "rate_effect_floor": 0.5})
    assert _flags(MISSING, report, strict) == {"a": False, "b": False}


def test_an_effect_floor_needs_outside_band_on_a_series_that_has_one():
    with pytest.raises(ValidationError, match="effect_floor applies"):
        RuleSpec(name="x", series="drift.score", outside_band=True, effect_floor=0.2)
    with pytest.raises(ValidationError, match="effect_floor applies"):
        RuleSpec(name="x", series="quality.missing_rate", above=0.2, effect_floor=0.2)


def test_cohens_h_makes_a_rare_class_tripling_matter_and_a_two_point_move_on_a_balanced_one_not():
    assert R.cohens_h(0.03, 0.01) > 0.1 > R.cohens_h(0.52, 0.50) > 0
    rule = RuleSpec(name="c", series="prediction.class_share", outside_band=True, band_rate=1e-4)

    def report(share1: float, ref1: float, rows: int) -> dict:
        return {"rows": rows, "reference_rows": 50_000, "too_small": False, "predictions": {
            "class_share": {"0": 1 - share1, "1": share1}, "reference_class_share": {"0": 1 - ref1, "1": ref1}}}

    assert _flags(rule, report(0.03, 0.01, 20_000))["1"] is True
    assert _flags(rule, report(0.52, 0.50, 20_000)) == {"0": False, "1": False}


def test_out_of_range_is_about_two_in_n_plus_one_and_varies_with_the_reference():
    rng = np.random.default_rng(3)
    n, m, reps = 300, 1000, 2000
    ref = rng.normal(size=(reps, n))
    lo, hi = ref.min(axis=1), ref.max(axis=1)
    from scipy.stats import norm

    outside = norm.cdf(lo) + norm.sf(hi)                 # each reference's true outside mass
    assert outside.mean() == pytest.approx(2 / (n + 1), rel=0.05)
    assert outside.std() > 0.5 * outside.mean()          # far from one fixed rate
    a, b = R.out_of_range_prior(n)
    assert a / (a + b) == pytest.approx(2 / (n + 1), rel=1e-6)
    # the exact Beta-binomial test holds its rate; the old binomial test against 1/(n + 1) does not
    k = rng.binomial(m, outside)
    p = np.array([R.rise_pvalue(int(x), m, (a, b)) for x in k])
    from scipy.stats import binom

    old = binom.sf(k - 1, m, 1 / (n + 1))
    assert 0.002 <= (p <= 0.01).mean() <= 0.015
    assert (old <= 0.01).mean() > 0.2


def test_unseen_categories_are_judged_against_the_reference_missing_mass():
    rng = np.random.default_rng(4)
    freqs = 1 / np.arange(1, 51)
    freqs /= freqs.sum()
    ref = rng.multinomial(300, freqs)
    once = int((ref == 1).sum())
    unseen_mass = float(freqs[ref == 0].sum())
    assert once > 0 and unseen_mass > 0.01                   # a 300-row reference misses real categories
    ctx = RuleContext(**{**CTX.__dict__, "reference_singletons": {"c": (once, int((ref == 2).sum()), 0)}})
    rule = RuleSpec(name="u", series="quality.unseen_rate", outside_band=True, band_rate=1e-3)

    def report(share: float) -> dict:
        return {"rows": 20_000, "reference_rows": 300, "too_small": False, "quality": [
            {"feature": "c", "missing_rate": 0.0, "reference_missing_rate": 0.0, "out_of_range_rate": None,
             "unseen_rate": share}]}

    assert _flags(rule, report(unseen_mass), ctx) == {"c": False}
    assert _flags(rule, report(unseen_mass + 0.15), ctx) == {"c": True}


def test_the_performance_band_counts_the_validation_sets_error_and_has_a_floor():
    rng = np.random.default_rng(5)

    def baseline(n: int, **config) -> Baseline:
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < 0.9, y, 1 - y)
        return Baseline("classification", y, pred, None, 2, False, PerformanceConfig(bootstrap=60, **config))

    base = baseline(1500)
    lo, _ = base.band(4000)["accuracy"]
    sd_val, sd_win = base.sd(1500)["accuracy"], base.sd(4000)["accuracy"]
    assert sd_val > sd_win                                # the baseline is the noisier side here
    acc = base.values["accuracy"]
    assert acc - lo == pytest.approx(max(0.02, 0.01 + 3 * np.hypot(sd_val, sd_win)), rel=1e-9)
    assert acc - lo > 3 * sd_win * 1.5
    # without the floor: the test alone, both samples' error
    bare = baseline(1500, effect_floors={"accuracy": 0.0})
    lo, _ = bare.band(4000)["accuracy"]
    assert bare.values["accuracy"] - lo == pytest.approx(3 * np.hypot(bare.sd(1500)["accuracy"],
                                                                       bare.sd(4000)["accuracy"]), rel=1e-9)
    wide = baseline(1500, effect_floors={"accuracy": 0.2})     # at any size at least the floor
    assert wide.values["accuracy"] - wide.band(4000)["accuracy"][0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="unknown metric"):
        PerformanceConfig(effect_floors={"acc": 0.1})


@pytest.mark.parametrize("series, key, ref, moved, tiny", [
    ("prediction.mean", "mean", 10.0, 10.6, 10.1),              # sd 2: +0.3 sd vs +0.05 sd
    ("prediction.variance", "variance", 4.0, 9.0, 4.32),         # sd x1.5 vs x1.04
    ("prediction.confidence", "mean_confidence", 0.90, 0.85, 0.885)])
def test_prediction_moments_flag_a_real_move_and_not_a_tiny_one_on_a_huge_window(series, key, ref, moved, tiny):
    rule = RuleSpec(name="p", series=series, outside_band=True, band_rate=1e-4)

    def report(value: float, rows: int) -> dict:
        p = {key: value, f"reference_{key}": ref}
        if key == "mean":
            p.update(variance=4.0, reference_variance=4.0)
        return {"rows": rows, "reference_rows": 50_000, "too_small": False, "predictions": p}

    assert _flags(rule, report(moved, 1000)) == {"": True}
    assert _flags(rule, report(tiny, 20_000)) == {"": False}
    assert _flags(rule.model_copy(update={"effect_floor": 0.0}), report(tiny, 20_000)) == {"": True}  # significant
    assert _flags(rule, report(moved, 10)) == {"": False}       # ten rows prove nothing
