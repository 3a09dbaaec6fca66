"""The fast subset of benchmarks/calibration_drift.py: the drift verdicts' null rate, both
bounds, and the near-null / shift streams, through the whole evaluation path on a model
with a feature of every shape (normal, t(2), Lomax, discrete, zero-inflated, nullable,
50-category Zipf, 5 categories)."""

from __future__ import annotations

import numpy as np
from scipy import stats as ss

from benchmarks import calibration_drift as C
from monitoring.stats.evaluate import DriftConfig


def flags_only(stream: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in stream.items() if k[:2] not in ("p:", "e:")}


def test_every_shapes_raw_p_values_reject_at_their_nominal_rate_on_exact_nulls():
    """P(p < 0.1) per feature over null windows lies within binomial bounds around 0.1 in
    both directions: not liberal (heavy tails, unseen categories) and not so conservative
    that the test has lost its power (the lower bound)."""
    rng = np.random.default_rng(2024)
    below, total = {}, 0
    for _ in range(2):
        model = C.Model(rng, 5000, DriftConfig())
        for _ in range(25):
            report = model.window(*C.rows(rng, 1000))
            for f in report.features:
                below[f.feature] = below.get(f.feature, 0) + (f.p_value < 0.1)
            total += 1
    n = total * len(below)
    k = sum(below.values())
    assert ss.binom.ppf(0.001, n, 0.1) <= k <= ss.binom.ppf(0.999, n, 0.1), (k, n, below)
    for name, hits in below.items():  # no single shape far off (Bonferroni over 8 features)
        assert hits <= ss.binom.ppf(1 - 0.001 / 8, total, 0.1), (name, hits, total)


def test_a_relaxed_family_flags_null_windows_at_about_its_rate_and_a_strict_one_never():
    """With no effect floor and alpha 0.2, Holm's family flags about 1 - (1 - 0.2/8)^8 of
    null windows (lower and upper bound); with the defaults, none."""
    rng = np.random.default_rng(77)
    relaxed = C.run_stream(5000, 1000, 2, 25, C.Stream(), 5, DriftConfig(alpha=0.2, effect_floor=0.0))
    k, n = int(relaxed["feature_drift (any)"].sum()), relaxed["feature_drift (any)"].size
    expected = 1 - (1 - 0.2 / 8) ** 8
    assert ss.binom.ppf(0.001, n, expected) <= k <= ss.binom.ppf(0.999, n, 0.2), (k, n)
    strict = C.run_stream(5000, 1000, 1, 10, C.Stream(), int(rng.integers(1 << 30)), DriftConfig())
    assert not strict["feature_drift (any)"].any() and not strict["prediction_drift"].any()


def test_near_null_traffic_flags_nothing_and_a_real_shift_is_flagged_on_exactly_its_features():
    """50,000-row reference, 20,000-row windows: +0.02 sd on every numeric feature, a
    1-point category move and a 2-point class-share move flag nothing (feature, prediction
    or multivariate); 0.3 sd on one feature and a 10-point category move flag those two."""
    cfg = DriftConfig()
    near = flags_only(C.run_stream(50_000, 20_000, 1, 2, C.NEAR_NULL, 11, cfg))
    assert not any(v.any() for v in near.values()), {k: v.sum() for k, v in near.items() if v.any()}
    shifted = flags_only(C.run_stream(50_000, 20_000, 1, 2, C.SHIFTED, 12, cfg))
    flagged = {k for k, v in shifted.items() if k.startswith("feature:") and v.all()}
    assert flagged == {"feature:normal", "feature:five"}
    assert not any(v.any() for k, v in shifted.items() if k.startswith("feature:") and k not in flagged)
