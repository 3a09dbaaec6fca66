"""Drift statistics: a contract every statistic meets, Holm, and seeded power and
false-alarm checks of the whole per-window evaluation."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import stats as ss

from monitoring.stats import drift as D
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator, default_method
from models.frames import frame_to_columns
from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.profile import Profile, edges_from_sample
from monitoring.schema import ModelSchema, infer_feature_specs
from monitoring.stats.sketches import NumericSketch, quantile_edges
from tests.support import synth

STATS = sorted(D.STATISTICS)


def binned(rng, n_ref, n_win, shift=0.0, bins=30):
    ref = rng.normal(size=n_ref)
    edges = quantile_edges(ref, bins)
    r, w = NumericSketch(edges), NumericSketch(edges)
    r.update(ref)
    w.update(rng.normal(loc=shift, size=n_win))
    return r, w


# -- the contract ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", STATS)
def test_identical_counts_are_no_drift(method):
    r, _ = binned(np.random.default_rng(0), 5000, 10)
    res = D.STATISTICS[method](r.counts, r.counts, edges=r.edges, scale=1.0, nulls=D.NullCache(draws=500))
    assert res.method == method
    assert res.statistic == pytest.approx(0.0, abs=1e-9)
    assert res.p_value > 0.5


@pytest.mark.parametrize("method", STATS)
def test_known_shift_is_detected(method):
    r, w = binned(np.random.default_rng(1), 5000, 1000, shift=0.5)
    res = D.STATISTICS[method](r.counts, w.counts, edges=r.edges, scale=1.0, nulls=D.NullCache(draws=500))
    assert res.p_value < 1e-4 and res.statistic > 0


@pytest.mark.parametrize("method", STATS)
@pytest.mark.parametrize("n_win", [50, 500, 5000])
def test_p_values_are_calibrated_under_the_null(method, n_win):
    """Reject at 5 % in about 5 % of null windows, the reference's own sampling error included."""
    rng = np.random.default_rng(zlib.crc32(f"{method}-{n_win}".encode()))  # str hash() is salted per process
    nulls = D.NullCache(draws=1000)
    reps, rejections = 200, 0
    for _ in range(reps):
        r, w = binned(rng, 2000, n_win)
        rejections += D.STATISTICS[method](r.counts, w.counts, edges=r.edges, scale=1.0, nulls=nulls).p_value < 0.05
    # The p-values are asymptotic or bootstrapped, so allow the rate 1.5x nominal (measured over
    # 1,500 null windows: JS 4.9 %, PSI 6.2 % at 5 %); a miscalibrated test lands far above.
    assert rejections <= ss.binom.ppf(0.999, reps, 0.05 * 1.5)


NULL_WINDOWS = 2000


@pytest.mark.parametrize("method", ["jensenshannon", "psi"])
def test_divergences_reject_at_the_nominal_rate_under_the_null(method):
    """Windows of 5,000 rows against a 2,000-row reference take the chi-square asymptotics
    (8·n_eff·JS and n_eff·PSI). Over 2,000 null windows the 5 % rejection rate must lie in
    the central 99.8 % of Binomial(2000, 0.05) (3.5 % to 6.5 %): a p-value 1.5x too liberal
    (7.5 %) or 1.5x too conservative (3.3 %) lands outside. Measured: JS 4.35 %, PSI 5.0 %;
    the JS factor mistyped as 9 gives 9.8 %."""
    rng = np.random.default_rng(zlib.crc32(f"{method}-null-rate".encode()))
    rejections = 0
    for _ in range(NULL_WINDOWS):
        r, w = binned(rng, 2000, 5000)
        rejections += D.STATISTICS[method](r.counts, w.counts, edges=r.edges, scale=1.0).p_value < 0.05
    low, high = ss.binom.ppf([0.001, 0.999], NULL_WINDOWS, 0.05)
    assert low <= rejections <= high, f"{rejections / NULL_WINDOWS:.2%} of null windows rejected at 5 %"


@pytest.mark.parametrize("method", STATS)
def test_rejects_mismatched_bins(method):
    with pytest.raises(ValueError, match="bins differ"):
        D.STATISTICS[method](np.ones(5), np.ones(6), edges=np.arange(4.0), scale=1.0)


def test_ks_matches_scipy_on_fine_bins():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=3000), rng.normal(0.1, size=800)
    edges = np.unique(np.concatenate([a, b]))[:-1]
    ra, rb = NumericSketch(edges), NumericSketch(edges)
    ra.update(a)
    rb.update(b)
    ours = D.ks(ra.counts, rb.counts)
    ref = ss.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-6)


def test_wasserstein_close_to_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=50_000), rng.normal(0.3, 1.2, size=50_000)
    r, w = NumericSketch(quantile_edges(a, 100)), None
    w = NumericSketch(r.edges)
    r.update(a)
    w.update(b)
    ours = D.wasserstein(r.counts, w.counts, edges=r.edges, scale=a.std(), nulls=D.NullCache(draws=200)).statistic
    assert ours == pytest.approx(ss.wasserstein_distance(a, b) / a.std(), rel=0.15)


def test_chisquare_pools_sparse_neighbours_in_order():
    ref, win = D.pool_bins(np.array([100.0, 1, 1, 1, 100]), np.array([10.0, 0, 0, 0, 10]))
    assert ref.tolist() == [100.0, 103.0] and win.tolist() == [10.0, 10.0]  # merged in order, totals kept


def test_holm():
    assert D.holm([0.01, 0.04, 0.03]).round(6).tolist() == [0.03, 0.06, 0.06]
    assert D.holm([0.5, 0.001]).tolist() == [0.5, 0.002]
    assert D.holm([]).size == 0


def test_small_windows_are_simulated_at_their_size_and_larger_ones_on_a_log_grid():
    assert D.size_grid(5) == 5 and D.size_grid(60) == 60 and D.size_grid(D.EXACT_SIZES) == D.EXACT_SIZES
    assert D.size_grid(1030) == D.size_grid(1040)
    steps = sorted({D.size_grid(n) for n in range(1000, 2001)})
    assert len(steps) == 9 and max(b / a for a, b in zip(steps, steps[1:])) < 1.1
    assert max(abs(D.size_grid(n) / n - 1) for n in range(65, 100_000, 7)) < 0.05


def test_each_features_null_has_its_own_random_stream():
    """Two features with the same bins and sizes must not share their null draws (their
    false alarms would coincide)."""
    rng = np.random.default_rng(0)
    r, w = binned(rng, 2000, 300)
    nulls = D.NullCache(draws=500)
    a = D.wasserstein(r.counts, w.counts, edges=r.edges, scale=1.0, key=("num", "a"), nulls=nulls)
    b = D.wasserstein(r.counts, w.counts, edges=r.edges, scale=1.0, key=("num", "b"), nulls=nulls)
    nulls_a, nulls_b = (v[0] for v in nulls._cache.values())
    assert a.statistic == b.statistic and not np.array_equal(nulls_a, nulls_b)


def test_wasserstein_tail_p_values_are_not_liberal_beyond_the_base_draws():
    """P(p < 1e-3) under the null stays within its nominal rate even though 1e-3 is beyond
    what the base null (here 500 draws) resolves: the refined null and its exponential
    tail take over there."""
    rng = np.random.default_rng(7)
    ref = rng.standard_t(2, size=5000)
    edges = quantile_edges(ref, 30)
    r = NumericSketch(edges)
    r.update(ref)
    nulls, trials, small = D.NullCache(draws=500, tail_draws=20_000), 6000, 0
    for _ in range(trials):
        w = NumericSketch(edges)
        w.update(rng.choice(ref, 50))  # resampling the reference: an exact null given it
        small += D.wasserstein(r.counts, w.counts, edges=edges, scale=1.2, key=("t",), nulls=nulls).p_value < 1e-3
    assert small <= ss.binom.ppf(0.999, trials, 1e-3), small


def test_default_method_follows_evidently():
    assert default_method("numeric", 1000, 50) == "ks"
    assert default_method("numeric", 1001, 50) == "wasserstein"
    assert default_method("numeric", 500, 3) == "chisquare"
    assert default_method("categorical", 500, 0) == "chisquare"
    assert default_method("categorical", 5000, 0) == "jensenshannon"


def test_config_is_validated():
    with pytest.raises(ValueError, match="alpha"):
        DriftConfig(alpha=0)
    with pytest.raises(ValueError, match="method for 'x'"):
        DriftConfig(methods={"x": "magic"})


# -- whole-window behaviour on seeded data ---------------------------------------------------

WINDOW_FOR_POWER = 1000


@pytest.mark.parametrize("ref_rows", [800, 20_000])  # p-value tests and distances (Evidently's rule)
def test_shift_is_flagged_on_exactly_the_shifted_features(ref_rows):
    """0.3 sd shift in 5 of 20 numeric features, reversed frequencies in 1 of 5 categorical
    features: each is flagged with power >= 0.9 at windows of 1,000 rows, others rarely."""
    rng = np.random.default_rng(ref_rows)
    schema, prof = synth.reference(rng, ref_rows)
    ev = WindowEvaluator(schema, prof, DriftConfig(alpha=0.05))
    trials, hits, exact = 30, {}, 0
    wrong = 0
    for _ in range(trials):
        report = ev.evaluate(synth.window(schema, prof, synth.frame(rng, WINDOW_FOR_POWER, shift=0.3, reverse_cat=True)))
        got = set(report.drifted)
        expected = set(synth.SHIFTED_NUMERIC) | {synth.SHIFTED_CATEGORICAL}
        exact += got == expected
        wrong += len(got - expected)
        for f in expected:
            hits[f] = hits.get(f, 0) + (f in got)
    assert min(hits.values()) / trials >= 0.9, hits
    assert wrong <= 2, "unshifted features flagged"
    assert exact / trials >= 0.85


@pytest.mark.parametrize("n_win", [50, 500, 5000])
def test_false_alarm_rate_per_window_within_alpha(n_win):
    """Clean windows: a window with any flag (multivariate included) is a false alarm; the
    rate stays within alpha, each block against a fresh reference sample."""
    alpha, blocks, per_block = 0.05, 4, 15
    rng = np.random.default_rng(n_win)
    alarms = 0
    for _ in range(blocks):
        schema, prof = synth.reference(rng, 5000)
        ev = WindowEvaluator(schema, prof, DriftConfig(alpha=alpha))
        for _ in range(per_block):
            r = ev.evaluate(synth.window(schema, prof, synth.frame(rng, n_win)))
            alarms += bool(r.drifted) or bool(r.multivariate and r.multivariate.flagged)
    n = blocks * per_block
    assert alarms <= ss.binom.ppf(0.999, n, alpha), f"{alarms} false alarms in {n} windows"


def test_a_significant_shift_below_the_effect_floor_is_not_flagged():
    """20,000-row windows make a 0.07 sd shift overwhelmingly significant; its effect (about
    0.07 normalised Wasserstein) is below the 0.1 floor, so nothing is flagged and every
    score stays below 1. Lowering the floor flags exactly the shifted features."""
    rng = np.random.default_rng(7)
    schema, prof = synth.reference(rng, 20_000, multivariate=False)
    win = synth.window(schema, prof, synth.frame(rng, 20_000, shift=0.07))
    report = WindowEvaluator(schema, prof, DriftConfig(alpha=0.01, effect_floor=0.1)).evaluate(win)
    shifted = [f for f in report.features if f.feature in synth.SHIFTED_NUMERIC]
    assert len(shifted) == len(synth.SHIFTED_NUMERIC)
    assert all(f.p_holm < 1e-4 and 0.03 < f.effect < 0.1 for f in shifted), shifted
    assert report.drifted == () and max(f.score for f in report.features) < 1
    lowered = WindowEvaluator(schema, prof, DriftConfig(alpha=0.01, effect_floor=0.03)).evaluate(win)
    assert set(lowered.drifted) == set(synth.SHIFTED_NUMERIC)
    assert all(f.score >= 1 for f in lowered.features if f.flagged)


def test_correlation_change_is_caught_only_by_the_multivariate_check():
    rng = np.random.default_rng(11)
    schema, prof = synth.reference(rng, 10_000)
    ev = WindowEvaluator(schema, prof, DriftConfig(alpha=0.01))
    caught = marginal = 0
    for _ in range(10):
        r = ev.evaluate(synth.window(schema, prof, synth.frame(rng, 1000, break_correlation=True)))
        marginal += bool(r.drifted)  # every marginal is unchanged: only chance (alpha = 1 %) flags one
        caught += r.multivariate.flagged
    assert caught >= 9
    assert marginal <= 1


def test_small_windows_are_reported_not_judged():
    rng = np.random.default_rng(5)
    schema, prof = synth.reference(rng, 2000)
    r = WindowEvaluator(schema, prof, DriftConfig(min_rows=30)).evaluate(
        synth.window(schema, prof, synth.frame(rng, 20, shift=3.0)))
    assert r.too_small and r.features == () and r.rows == 20


def test_merging_two_workers_windows_equals_one_window():
    rng = np.random.default_rng(6)
    schema, prof = synth.reference(rng, 3000)
    df = synth.frame(rng, 1000, shift=0.3)
    whole = synth.window(schema, prof, df)
    merged = synth.window(schema, prof, df.iloc[:370]).merge(synth.window(schema, prof, df.iloc[370:]))
    ev = WindowEvaluator(schema, prof)
    a, b = ev.evaluate(whole).to_dict(), ev.evaluate(merged).to_dict()
    assert a["drifted"] == b["drifted"]
    for fa, fb in zip(a["features"], b["features"]):
        assert fa["statistic"] == pytest.approx(fb["statistic"], rel=1e-9, abs=1e-12)
        assert fa["p_value"] == pytest.approx(fb["p_value"], rel=1e-6, abs=1e-300)


def test_quality_and_prediction_checks():
    from monitoring.schema import FeatureSpec, ModelSchema
    from monitoring.stats.profile import edges_from_sample

    schema = ModelSchema((FeatureSpec("x", "numeric", "float", nullable=True, minimum=-3.0, maximum=3.0),
                          FeatureSpec("c", "categorical", "str", categories=("a", "b"), accepts_unseen=True)),
                         task="classification", classes=("no", "yes"))
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(size=(2000, 1)), -3, 3)
    ref = Profile.empty(schema, edges_from_sample(schema, x))
    proba = np.column_stack([np.full(2000, 0.8), np.full(2000, 0.2)])
    ref_classes = (np.arange(2000) % 5 == 0).astype(int)  # 20 % "yes"
    ref.update(x, rng.integers(0, 2, size=(2000, 1)).astype(np.int32), class_codes=ref_classes, proba=proba)
    win = ref.empty_like()
    wx = rng.normal(size=(100, 1))
    wx[:10] = np.nan
    wx[10:20] = 50.0
    codes = np.zeros((100, 1), dtype=np.int32)
    codes[:5] = -2
    wproba = np.column_stack([np.full(100, 0.3), np.full(100, 0.7)])
    win.update(wx, codes, class_codes=np.ones(100, int), proba=wproba)
    r = WindowEvaluator(schema, ref).evaluate(win, rejected={"wrong_type": 3})
    q = {f.feature: f for f in r.quality}
    assert q["x"].missing_rate == pytest.approx(0.10) and q["x"].reference_missing_rate == 0
    assert q["x"].out_of_range_rate == pytest.approx(10 / 90, abs=0.03)
    assert q["c"].unseen_rate == pytest.approx(0.05)
    assert r.rejected == {"wrong_type": 3}
    p = r.predictions
    assert p.flagged and p.class_share == {"no": 0.0, "yes": 1.0} and p.reference_class_share["no"] == 0.8
    assert p.mean_confidence == pytest.approx(0.7) and p.reference_mean_confidence == pytest.approx(0.8)
    assert p.entropy == 0.0


@pytest.mark.parametrize("rows", [300, 1000])
def test_prepare_fills_exactly_the_nulls_a_window_of_that_size_needs(rows):
    """After ``prepare(m)`` a real window of m rows adds no null distribution and draws no
    tail (prepare draws every null's tail, so a drifted first window is not slower than a
    later one), and its report is exactly that of an evaluator that was not prepared (the
    nulls are seeded by their key; an unprepared one draws tails only where an observation
    lands far out). At 300 rows the categorical Jensen-Shannon tests bootstrap too; x0 has missing
    values (in the reference and the window), x1 and c0 use PSI, c1 chi-square (its effect,
    Cohen's h, needs no null)."""
    rng = np.random.default_rng(rows)
    ref_df = synth.frame(rng, 20_000)
    ref_df.loc[rng.random(len(ref_df)) < 0.05, "x0"] = np.nan
    schema = ModelSchema(tuple(infer_feature_specs(ref_df)), task="regression")
    num, codes = frame_to_columns(ref_df, schema)
    det = PcaDetector.fit(num[:5000])
    prof = Profile.empty(schema, edges_from_sample(schema, num), np.array([0.0]), detector=det)
    prof.update(num, codes, values=rng.normal(size=len(ref_df)), mv_errors=det.log_errors(num))
    cfg = DriftConfig(alpha=0.05, methods={"x1": "psi", "c0": "psi", "c1": "chisquare"})
    df = synth.frame(rng, rows, shift=0.3, reverse_cat=True)
    df.loc[rng.random(rows) < 0.05, "x0"] = np.nan
    window = synth.window(schema, prof, df)

    prepared = WindowEvaluator(schema, prof, cfg, nulls=D.NullCache())
    added = prepared.prepare(rows)
    assert added == len(prepared.nulls._cache) >= 20  # one per numeric feature at least
    assert prepared.nulls.tails() == added                      # every tail drawn ahead
    before = len(prepared.nulls._cache)
    report = prepared.evaluate(window)
    assert len(prepared.nulls._cache) == before and prepared.nulls.tails() == added
    assert any(f.flagged for f in report.features)              # the shift reaches the tails
    cold = WindowEvaluator(schema, prof, cfg, nulls=D.NullCache())
    assert report == cold.evaluate(window)
    assert len(cold.nulls._cache) <= before and 0 < cold.nulls.tails() < added  # only where needed
    fresh = D.NullCache()
    with fresh.eager_tails():
        pass
    WindowEvaluator(schema, prof, cfg, nulls=fresh).evaluate(prof.expected_window(rows))
    assert fresh.tails() == 0                                   # eager only inside the block
    if rows == 300:
        assert any(k[0][0] == "js" for k in prepared.nulls._cache), "categorical bootstrap not prepared"
