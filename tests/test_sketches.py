import json

import numpy as np
import pytest

from monitoring.profile import Profile
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.sketches import CategoricalSketch, NumericSketch, quantile_edges


def test_numeric_sketch_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    x[::17] = np.nan
    edges = quantile_edges(rng.normal(size=5000), 10)
    whole, a, b = NumericSketch(edges), NumericSketch(edges), NumericSketch(edges)
    whole.update(x)
    a.update(x[:333])
    b.update(x[333:])
    m = a.merge(b)
    assert m.counts.tolist() == whole.counts.tolist()
    assert m.missing == whole.missing == int(np.isnan(x).sum())
    assert m.mean == pytest.approx(np.nanmean(x))
    assert m.variance == pytest.approx(np.nanvar(x, ddof=1))
    assert (m.minimum, m.maximum) == (np.nanmin(x), np.nanmax(x))


def test_open_tails_catch_everything():
    s = NumericSketch(np.array([0.0, 1.0]))
    s.update(np.array([-1e300, 0.0, 0.5, 1.0, 1e300]))
    assert s.counts.tolist() == [1, 2, 2]
    assert s.counts.sum() == s.n == 5


def test_categorical_sketch_counts_missing_and_unseen():
    s = CategoricalSketch(3)
    s.update(np.array([0, 2, 2, -1, -2, -2]))
    assert s.counts.tolist() == [1, 0, 2] and s.missing == 1 and s.unseen == 2 and s.n == 5


def test_merge_refuses_different_bins():
    with pytest.raises(ValueError):
        NumericSketch(np.array([0.0])).merge(NumericSketch(np.array([1.0])))
    with pytest.raises(ValueError):
        CategoricalSketch(2).merge(CategoricalSketch(3))


def test_profile_round_trip_and_merge():
    schema = ModelSchema((FeatureSpec("x", "numeric", "float"), FeatureSpec("c", "categorical", "str", categories=("a", "b"))),
                         task="classification", classes=(0, 1))
    rng = np.random.default_rng(0)
    ref = Profile.empty(schema, {"x": quantile_edges(rng.normal(size=1000), 10)})
    num, codes = rng.normal(size=(100, 1)), rng.integers(0, 2, size=(100, 1)).astype(np.int32)
    proba = rng.dirichlet([1, 1], size=100)
    ref.update(num, codes, class_codes=proba.argmax(1), proba=proba)
    back = Profile.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert back.to_dict() == ref.to_dict()
    w1, w2 = ref.empty_like(), ref.empty_like()
    w1.update(num[:40], codes[:40], class_codes=proba[:40].argmax(1), proba=proba[:40])
    w2.update(num[40:], codes[40:], class_codes=proba[40:].argmax(1), proba=proba[40:])
    merged = w1.merge(w2)
    assert merged.rows == ref.rows == 100
    assert merged.numeric["x"].counts.tolist() == ref.numeric["x"].counts.tolist()
    assert merged.numeric["x"].mean == pytest.approx(ref.numeric["x"].mean)
    assert merged.numeric["x"].m2 == pytest.approx(ref.numeric["x"].m2)
    assert merged.categorical["c"].to_dict() == ref.categorical["c"].to_dict()
    assert merged.predictions.classes.to_dict() == ref.predictions.classes.to_dict()
    assert merged.predictions.confidence.counts.tolist() == ref.predictions.confidence.counts.tolist()
