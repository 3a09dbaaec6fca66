import json

import numpy as np
import pytest

from monitoring.stats.profile import Profile
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.stats.sketches import BinIndex, CategoricalSketch, NumericSketch, quantile_edges


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


def test_bin_index_equals_binary_search():
    """The cell tables give searchsorted's bins exactly: values on, just beside and far
    from the edges, infinities, and edges too close together for the tables."""
    rng = np.random.default_rng(3)
    edges = [quantile_edges(rng.normal(size=5000), 30), np.unique(rng.lognormal(0, 4, 30)),
             np.array([1.0, np.nextafter(1.0, 2.0), 2.0]), np.array([0.5]), np.zeros(0),
             np.array([-1e300, 0.0, 1e300])]
    ix = BinIndex(edges)
    assert ix.fast and ix.slow  # both paths are exercised
    X = np.empty((len(edges), 4000))
    for j, e in enumerate(edges):
        pool = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), [np.inf, -np.inf, 0.0, 1e308]])
        X[j] = np.where(rng.random(X.shape[1]) < 0.5, rng.choice(pool, X.shape[1]),
                        rng.normal(size=X.shape[1]) * 10.0 ** rng.integers(-3, 4, X.shape[1]))
    want = [np.searchsorted(e, X[j], side="right") + j * ix.width for j, e in enumerate(edges)]
    assert ix.index(X).tolist() == np.array(want).tolist()


@pytest.mark.parametrize("batch", [1, 100, 3000, 9000])
def test_profile_batches_equal_one_pass(batch):
    """Buffered, folded and chunked updates: counts exact, moments to rounding."""
    schema = ModelSchema((FeatureSpec("x", "numeric", "float"), FeatureSpec("y", "numeric", "float"),
                          FeatureSpec("c", "categorical", "str", categories=("a", "b", "c"))),
                         task="classification", classes=(0, 1, 2))
    rng = np.random.default_rng(2)
    n = 20_000
    num = rng.normal(size=(n, 2))
    num[::13, 0] = np.nan
    codes = rng.integers(-2, 3, size=(n, 1)).astype(np.int32)
    proba = rng.dirichlet([1, 1, 1], size=n)
    ref = Profile.empty(schema, {"x": quantile_edges(rng.normal(size=1000), 10), "y": np.array([0.0])})
    whole = ref.empty_like()
    whole.update(num, codes, class_codes=proba.argmax(1), proba=proba)
    parts = ref.empty_like()
    for a in range(0, n, batch):
        parts.update(num[a:a + batch], codes[a:a + batch], class_codes=proba[a:a + batch].argmax(1),
                     proba=proba[a:a + batch])
    assert parts.rows == whole.rows == n
    w, p = whole.to_dict(), parts.to_dict()
    sketches = lambda d: list(d["numeric"].values()) + [d["predictions"]["confidence"]]  # noqa: E731
    for sw, sp in zip(sketches(w), sketches(p)):
        for k in ("mean", "m2"):
            sw[k] = pytest.approx(sp[k], rel=1e-12)
    assert p == w
    assert w["numeric"]["x"]["missing"] == len(range(0, n, 13))
