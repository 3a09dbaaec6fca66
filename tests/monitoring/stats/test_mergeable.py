"""One contract over every :class:`~monitoring.stats.mergeable.Mergeable` type: merging
partial windows gives what one pass over all their rows gives (counts exactly, moments to
1e-9), state survives ``to_dict``/``from_dict`` and JSON, ``empty_like()`` is the identity
on both sides, merging is associative and never changes its inputs.

A new Mergeable type fails ``test_every_mergeable_type_has_a_case`` until it gets a case here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import monitoring
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.stats.mergeable import Mergeable
from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.profile import PredictionSketch, Profile
from monitoring.stats.serving import ServingSketch, ServingStats
from monitoring.stats.sketches import CategoricalSketch, NumericSketch, quantile_edges

N_ROWS = 3000
RNG = np.random.default_rng(11)


@dataclass(frozen=True)
class Case:
    """How to build one Mergeable type from rows: ``empty()`` is a fresh empty object,
    ``fold(empty, rows)`` one pass over ``rows`` (a dict of equal-length columns)."""

    name: str
    empty: Callable[[], Mergeable]
    rows: dict[str, Any]
    fold: Callable[[Mergeable, dict[str, Any]], Mergeable]


def _update(obj, rows):
    obj.update(rows["x"])
    return obj


def _numeric_case() -> Case:
    x = RNG.normal(3.0, 2.0, N_ROWS)
    x[::17] = np.nan
    edges = quantile_edges(RNG.normal(3.0, 2.0, 5000), 12)
    return Case("numeric", lambda: NumericSketch(edges), {"x": x}, _update)


def _categorical_case() -> Case:
    return Case("categorical", lambda: CategoricalSketch(4), {"x": RNG.integers(-2, 4, N_ROWS)}, _update)


def _predictions_case(task: str) -> Case:
    if task == "classification":
        proba = RNG.dirichlet([1, 2, 3], N_ROWS)
        rows = {"codes": proba.argmax(1), "proba": proba}
        schema = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="classification", classes=(0, 1, 2))

        def fold(p, r):
            p.update(r["codes"], r["proba"], None)
            return p
    else:
        rows = {"values": RNG.lognormal(0, 1, N_ROWS)}
        schema = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="regression")

        def fold(p, r):
            p.update(None, None, r["values"])
            return p
    edges = quantile_edges(RNG.lognormal(0, 1, 2000), 10)
    return Case(f"predictions-{task}", lambda: PredictionSketch.empty(schema, edges), rows, fold)


def _profile_case(detector: bool) -> Case:
    schema = ModelSchema((FeatureSpec("a", "numeric", "float"), FeatureSpec("b", "numeric", "float"),
                          FeatureSpec("c", "categorical", "str", categories=("u", "v", "w"))),
                         task="classification", classes=("no", "yes"))
    num = RNG.normal(size=(N_ROWS, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    num[::23, 1] = np.nan
    codes = RNG.integers(-2, 3, size=(N_ROWS, 1)).astype(np.int32)
    proba = RNG.dirichlet([2, 1], N_ROWS)
    det = PcaDetector.fit(RNG.normal(size=(400, 2))) if detector else None
    edges = {"a": quantile_edges(RNG.normal(size=1000), 10), "b": quantile_edges(RNG.normal(size=1000), 8)}
    rows = {"num": num, "codes": codes, "proba": proba}

    def fold(p, r):
        p.update(r["num"], r["codes"], class_codes=r["proba"].argmax(1), proba=r["proba"],
                 mv_errors=None if det is None else det.log_errors(r["num"]))
        return p
    return Case("profile" + ("-detector" if detector else ""), lambda: Profile.empty(schema, edges, detector=det),
                rows, fold)


def _serving_case() -> Case:
    kinds = RNG.choice(["req", "sys"], N_ROWS, p=[0.9, 0.1])
    rows = {"kind": kinds, "status": RNG.choice([200, 200, 200, 404, 500, 503], N_ROWS),
            "seconds": RNG.lognormal(np.log(0.02), 1.0, N_ROWS), "trace": [f"t{i}" for i in range(N_ROWS)],
            "worker": RNG.choice(["w1", "w2"], N_ROWS), "cpu": RNG.uniform(0, 2, N_ROWS),
            "rss": RNG.uniform(1e8, 2e8, N_ROWS)}

    def fold(sketch, r):  # the accumulator the request path uses; it starts from an empty sketch
        assert sketch.empty
        stats = ServingStats()
        for i in range(len(r["kind"])):
            if r["kind"][i] == "req":
                stats.record(int(r["status"][i]), float(r["seconds"][i]), r["trace"][i])
            else:
                stats.worker = str(r["worker"][i])  # one accumulator standing in for both workers
                stats.note_system(float(r["cpu"][i]), float(r["rss"][i]))
        return stats.take()
    return Case("serving", ServingSketch, rows, fold)


CASES = [_numeric_case(), _categorical_case(), _predictions_case("classification"), _predictions_case("regression"),
         _profile_case(False), _profile_case(True), _serving_case()]


def _slice(rows: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    return {k: v[a:b] for k, v in rows.items()}


def _build(case: Case, a: int = 0, b: int = N_ROWS) -> Mergeable:
    return case.fold(case.empty(), _slice(case.rows, a, b))


def _close(got: Any, want: Any, path: str = "") -> None:
    """Equal, except floats to 1e-9 (moments depend on the order rows are summed in)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{path}[{i}]")
    else:
        assert got == want and type(got) is type(want), path


def _all_subclasses(cls) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_every_mergeable_type_has_a_case():
    for m in pkgutil.walk_packages(monitoring.__path__, "monitoring."):
        importlib.import_module(m.name)
    covered = {type(c.empty()) for c in CASES}
    assert _all_subclasses(Mergeable) == covered


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_merge_of_parts_equals_one_pass(case):
    whole = _build(case).to_dict()
    for cut in (1, N_ROWS // 3, N_ROWS - 1):
        halves = _build(case, 0, cut).merge(_build(case, cut, N_ROWS))
        _close(halves.to_dict(), whole)
    a, b, c = _build(case, 0, 700), _build(case, 700, 1900), _build(case, 1900, N_ROWS)
    _close((a + b + c).to_dict(), whole)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_round_trip_through_dict_and_json(case):
    for obj in (_build(case), case.empty()):
        d = obj.to_dict()
        assert type(obj).from_dict(d).to_dict() == d
        text = json.dumps(d)
        assert type(obj).from_dict(json.loads(text)).to_dict() == d
        assert json.dumps(type(obj).from_dict(json.loads(text)).to_dict()) == text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_empty_is_the_identity_on_both_sides(case):
    x = _build(case, 0, 1000)
    e = x.empty_like()
    assert type(e) is type(x)
    assert e.empty_like().to_dict() == e.to_dict()
    assert (e + x).to_dict() == x.to_dict()
    assert (x + e).to_dict() == x.to_dict()
    assert (e + e).to_dict() == e.to_dict()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_merge_is_associative(case):
    a, b, c = _build(case, 0, 500), _build(case, 500, 2100), _build(case, 2100, N_ROWS)
    _close(a.merge(b).merge(c).to_dict(), a.merge(b.merge(c)).to_dict())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_merge_does_not_change_its_inputs(case):
    a, b = _build(case, 0, 1200), _build(case, 1200, N_ROWS)
    before = json.dumps(a.to_dict()), json.dumps(b.to_dict())
    merged = a + b
    merged + a + a.empty_like()
    a.merge(a)
    assert (json.dumps(a.to_dict()), json.dumps(b.to_dict())) == before
