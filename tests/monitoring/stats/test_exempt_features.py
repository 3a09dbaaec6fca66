"""Features exempt from drift (ids, dates; issue 18, item 4): no drift test, no unseen or
out-of-range rate, no part in the multivariate detector; every other feature judged as before."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from monitoring.stats.evaluate import WindowEvaluator
from monitoring.stats.multivariate import PcaDetector
from tests.support import synth


def _exempt(schema, names):
    return schema.with_features([replace(f, drift_exempt="id-like") if f.name in names else f
                                 for f in schema.features])


def test_an_exempt_feature_gets_no_drift_test_and_no_unseen_or_range_rate():
    rng = np.random.default_rng(0)
    schema, prof = synth.reference(rng, 3000, multivariate=False)
    exempt = _exempt(schema, {"x2", "c2"})
    shifted = synth.frame(rng, 500, shift=3.0, reverse_cat=True)  # x2 and c2 among the shifted
    plain = WindowEvaluator(schema, prof).evaluate(synth.window(schema, prof, shifted))
    report = WindowEvaluator(exempt, prof).evaluate(synth.window(schema, prof, shifted))
    assert {"x2", "c2"} <= set(plain.drifted)
    assert {f.feature for f in report.features} == set(schema.names) - {"x2", "c2"}
    assert set(report.drifted) == set(plain.drifted) - {"x2", "c2"}
    quality = {q.feature: q for q in report.quality}
    assert quality["x2"].out_of_range_rate is None and quality["c2"].unseen_rate is None
    assert quality["x2"].missing_rate == 0.0 and quality["x5"].out_of_range_rate is not None


def test_the_multivariate_detector_ignores_exempt_columns_and_keeps_them_through_serialisation():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 4))
    X[:, 1] = 0.9 * X[:, 0] + 0.1 * X[:, 1]
    X[:, 3] = np.arange(2000)  # an id: grows without bound
    det = PcaDetector.fit(X, ignored=(3,))
    live = X[:200].copy()
    live[:, 3] += 10**6  # new ids, far beyond the reference's
    assert np.allclose(det.log_errors(live), det.log_errors(X[:200]))
    again = PcaDetector.from_dict(det.to_dict())
    assert again.ignored == (3,) and np.allclose(again.log_errors(live), det.log_errors(live))
    assert PcaDetector.fit(X[:, 2:], ignored=(1,)) is None  # one column left: nothing joint to test
    assert "ignored" not in PcaDetector.fit(X).to_dict()  # unchanged for models without exempt columns


def test_with_two_columns_in_play_besides_an_ignored_one_the_detector_still_tests_something():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=1000), rng.normal(size=1000), np.arange(1000)])
    X[:, 1] += 0.8 * X[:, 0]
    det = PcaDetector.fit(X, ignored=(2,))
    assert det.components.shape[0] == 1 and det.cal_var > 0  # one component for two columns: errors vary
    broken = X[:300].copy()
    broken[:, 1] = -broken[:, 1]  # the correlation reversed: every marginal as before
    window = det.empty_sketch()
    window.update(det.log_errors(broken))
    effect, p = det.test(window)
    assert effect > 0.5 and p < 1e-6
