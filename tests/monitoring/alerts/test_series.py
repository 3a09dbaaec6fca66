"""The series registry's contract, walked entry by entry: every series observes a real
report of its source, is exported as a gauge of the metric catalogue (or says why not),
has a PromQL form that renders for each condition it accepts, names the metric it reads
and parses with promtool (or says why not), accepts ``outside_band`` exactly when it has a
band, and is watched by a default rule or says why it is opt-in."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from monitoring import names as N
from monitoring.alerts import (SERIES, DefaultContext, DerivedRule, Obs, RuleContext, RuleSpec, Series, default_rules,
                               register_series)
from monitoring.alerts.gauges import publish_performance, publish_report
from monitoring.alerts.observers import observe, observe_performance, observe_window
from monitoring.alerts.promql import expressions, references_from, render
from monitoring.alerts.series import ObserveContext
from monitoring.metrics import BY_NAME
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.stats.evaluate import DriftConfig, WindowEvaluator
from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.performance import Baseline, Cbpe, PerformanceConfig, window_performance
from monitoring.stats.profile import Profile, edges_from_sample
from monitoring.stats.serving import ServingStats
from tests.support.promtool import check_rules

TASKS = ("classification", "regression")
ALL = sorted(SERIES)


# -- real reports of both tasks ------------------------------------------------------------

def _model(task: str, rng):
    feats = (FeatureSpec("a", "numeric", "float", minimum=-5.0, maximum=5.0),
             FeatureSpec("b", "numeric", "float", minimum=-5.0, maximum=5.0),
             FeatureSpec("c", "categorical", "str", categories=("u", "v", "w")))
    schema = ModelSchema(feats, task=task, classes=(0, 1) if task == "classification" else ())
    n = 2000
    num, codes = rng.normal(size=(n, 2)), rng.integers(0, 3, size=(n, 1)).astype(np.int32)
    det = PcaDetector.fit(num)
    proba, values = rng.dirichlet([1, 1], n), rng.normal(size=n)
    ref = Profile.empty(schema, edges_from_sample(schema, num), np.quantile(values, [0.25, 0.5, 0.75]), det)
    preds = dict(class_codes=proba.argmax(1), proba=proba) if task == "classification" else dict(values=values)
    ref.update(num, codes, mv_errors=det.log_errors(num), **preds)
    return schema, ref, det


def _window(task: str, rows: int):
    """A shifted window's typed report and its stored form (what the alert engine reads)."""
    rng = np.random.default_rng(1)
    schema, ref, det = _model(task, rng)
    num = rng.normal(loc=0.5, size=(rows, 2))
    num[::10, 0] = np.nan
    num[::7, 1] = 9.0
    codes = rng.integers(-2, 3, size=(rows, 1)).astype(np.int32)
    codes[codes == 2] = 0  # the known categories' mix moves too (unseen values alone are not drift)
    proba = rng.dirichlet([1, 2], rows)
    preds = dict(class_codes=proba.argmax(1), proba=proba) if task == "classification" \
        else dict(values=rng.normal(1.0, 2.0, rows))
    win = ref.empty_like()
    win.update(num, codes, mv_errors=det.log_errors(num), **preds)
    report = WindowEvaluator(schema, ref, DriftConfig()).evaluate(win, 3, started_at=100.0, ended_at=160.0)
    served = ServingStats("w1")
    for i in range(400):
        served.record(500 if i % 25 == 0 else 200, 0.01 * (1 + i % 7), f"t{i}")
    served.note_system(1.5, 2e8)
    stored = report.to_dict()
    stored["serving"] = served.take().summary()
    return schema, ref, report, stored


def _performance(task: str):
    rng = np.random.default_rng(2)
    n, m = 1500, 400
    if task == "classification":
        p1 = rng.beta(0.6, 0.6, n + m)
        y = (rng.random(n + m) < p1).astype(int)
        proba = np.column_stack([1 - p1, p1])
        pred = (p1 >= 0.5).astype(int)
        baseline, cbpe = Baseline(task, y[:n], pred[:n], proba[:n], 2, in_sample=False), Cbpe(y[:n], proba[:n])
        data = {"pred_code": pred[n:].astype(float), "pred_value": np.full(m, np.nan),
                "proba": [r.astype(np.float32).tobytes() for r in proba[n:]], "true_code": y[n:].astype(float),
                "true_value": np.full(m, np.nan)}
    else:
        y = rng.normal(size=n + m)
        pred = y + rng.normal(scale=0.5, size=n + m)
        baseline, cbpe = Baseline(task, y[:n], pred[:n], None, 0, in_sample=False), None
        data = {"pred_code": np.full(m, np.nan), "pred_value": pred[n:], "proba": [None] * m,
                "true_code": np.full(m, np.nan), "true_value": y[n:]}
    data.update(n=m, predicted_at=np.full(m, 1000.0), observed_at=np.full(m, 1005.0), labelled=np.ones(m, bool))
    result = window_performance(task, 3, data, baseline, cbpe, PerformanceConfig(), 2 if cbpe else 0, 1e9, None)
    return baseline, result


WINDOWS = {task: _window(task, 300) for task in TASKS}
SMALL = {task: _window(task, 10) for task in TASKS}
PERFORMANCE = {task: _performance(task) for task in TASKS}


def _context(task: str) -> RuleContext:
    schema = WINDOWS[task][0]
    return RuleContext(features=tuple(schema.names), classes=tuple(str(c) for c in schema.classes),
                       metrics=N.TASK_METRICS[task], reference_rows=2000, drift_alpha=0.01, error_rate=0.01)


def _labels(s: Series, task: str) -> list[str | None]:
    """The rule labels to try: every instance the model has (and None where allowed)."""
    ctx = _context(task)
    if s.label is None:
        return [None]
    named = list({"feature": ctx.features, "class": ctx.classes, "metric": ctx.metrics}[s.label])
    return named if s.label == "metric" else [None] + named


def _observations(s: Series, task: str, label: str | None, *, small: bool = False) -> dict[str, Obs]:
    rule = RuleSpec(name="r", series=s.name, label=label, above=0.5)
    if s.source == "window":
        stored = (SMALL if small else WINDOWS)[task][3]
        return observe_window(rule, stored, _context(task), {"history": [[i, stored["serving"]["latency"]]
                                                                         for i in range(5)]})
    baseline, result = PERFORMANCE[task]
    return observe_performance(rule, result, baseline)


# -- observers -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_every_series_observes_a_real_report_of_its_source(name):
    s = SERIES[name]
    seen: dict[str, Obs] = {}
    for task in TASKS:
        known = set(_labels(s, task)) - {None} or {""}
        for label in _labels(s, task):
            out = _observations(s, task, label)
            assert all(isinstance(o, Obs) for o in out.values())
            assert set(out) <= known, f"{name}: instances {set(out) - known} the model does not have"
            if label is not None:
                assert set(out) <= {label}
            seen.update(out)
    assert seen, f"{name}: no observation from a report of its source ({s.source})"
    assert any(o.value is not None for o in seen.values())


@pytest.mark.parametrize("name", [n for n in ALL if SERIES[n].judged])
def test_statistics_of_the_rows_observe_nothing_in_a_window_too_small_to_judge(name):
    assert SMALL["classification"][2].too_small
    for task in TASKS:
        for label in _labels(SERIES[name], task):
            assert _observations(SERIES[name], task, label, small=True) == {}


def test_observe_looks_the_observer_up_in_the_registry():
    stored = WINDOWS["classification"][3]
    rule = RuleSpec(name="r", series="drift.score", outside_band=True)
    ctx = ObserveContext(model=_context("classification"))
    direct = SERIES["drift.score"].observe(rule, stored, ctx)
    assert observe(rule, stored, ctx) == direct == observe_window(rule, stored, ctx.model)
    assert set(direct) == {"a", "b", "c"} and all(o.outside for o in direct.values())
    assert observe_performance(rule, PERFORMANCE["classification"][1]) == {}  # not a performance series


# -- gauges --------------------------------------------------------------------------------

class Recorded:
    """A stand-in for :class:`~monitoring.metrics.Metrics` that records what is set."""

    def __init__(self):
        self.sets: dict[str, dict[tuple, float]] = {}

    def __getitem__(self, name: str):
        assert name in BY_NAME, f"{name} is not in the metric catalogue"
        sets = self.sets.setdefault(name, {})

        class Instrument:
            def set(self, value, **labels):
                sets[tuple(sorted(labels.items()))] = value

            def add(self, value=1, **labels):
                sets[tuple(sorted(labels.items()))] = sets.get(tuple(sorted(labels.items())), 0) + value
        return Instrument()


@pytest.mark.parametrize("name", ALL)
def test_every_gauge_is_in_the_metric_catalogue_or_the_entry_says_why_not(name):
    s = SERIES[name]
    if s.gauge is None:
        assert s.no_gauge_reason and len(s.no_gauge_reason) > 20
        return
    g, d = s.gauge, BY_NAME.get(s.gauge.metric)
    assert d is not None and d.kind == "gauge"
    assert (g.label is None) == (s.label is None)
    assert g.label is None or g.label in d.labels
    assert (g.read is None) != (g.set_by is None)


def _published(task: str, small: bool = False) -> Recorded:
    m = Recorded()
    publish_report(m, (SMALL if small else WINDOWS)[task][2])
    if not small:
        publish_performance(m, PERFORMANCE[task][1])
    return m


@pytest.mark.parametrize("name", [n for n in ALL if SERIES[n].gauge is not None and SERIES[n].gauge.read])
def test_publishing_sets_the_gauge_of_every_series_from_its_entry(name):
    g = SERIES[name].gauge
    values = {}
    for task in TASKS:
        values.update(_published(task).sets.get(g.metric, {}))
    assert values, f"{name}: nothing published to {g.metric}"
    for labels, v in values.items():
        assert [k for k, _ in labels] == ([g.label] if g.label else [])
        assert isinstance(v, float) or isinstance(v, int)


def test_a_window_too_small_to_judge_publishes_only_what_is_counted():
    for task in TASKS:
        sets = _published(task, small=True).sets
        assert set(sets) == {N.M_WINDOWS_CLOSED, N.M_WINDOW_ROWS}


# -- PromQL --------------------------------------------------------------------------------

CONDITIONS = [dict(above=0.5), dict(below=0.1), dict(outside_band=True), dict(relative_change=0.2),
              dict(relative_change=0.2, direction="down")]
KW = dict(window_seconds=60, drift_alpha=0.01, error_rate=0.01)


def _references() -> dict[str, dict[str, float]]:
    """What a registered model's reference gives, plus a value for every other series."""
    out: dict[str, dict[str, float]] = {}
    for task in TASKS:
        schema, ref, _, _ = WINDOWS[task]
        for k, v in references_from(ref, schema, PERFORMANCE[task][0].values).items():
            out.setdefault(k, {}).update(v)
    for name, s in SERIES.items():
        out.setdefault(name, {}).setdefault("" if s.label is None else "a", 1.0)
    return out


def _rules_for(s: Series):
    """A rule for every condition the series accepts, per label of either task's model."""
    for task in TASKS:
        for label in _labels(s, task):
            for i, cond in enumerate(CONDITIONS):
                try:
                    yield RuleSpec(name=f"{s.name}.{task[0]}.{label or 'all'}.{i}", series=s.name, label=label, **cond)
                except ValueError:
                    continue


@pytest.mark.parametrize("name", ALL)
def test_every_promql_form_renders_and_reads_its_metric_or_the_entry_says_why_not(name):
    s = SERIES[name]
    if s.promql is None:
        assert s.no_promql_reason
        return
    form = s.promql
    assert form.metric in BY_NAME
    if s.gauge is not None:
        assert (form.metric, form.label) == (s.gauge.metric, s.gauge.label)
    assert (s.band is not None) == (form.band is not None or form.no_band_reason is not None)
    refs = _references()
    kinds = set()
    for rule in _rules_for(s):
        out = expressions(rule, references=refs, **KW)
        if isinstance(out, str):
            allowed = [form.no_band_reason if rule.outside_band else None,
                       form.no_relative_reason if rule.relative_change is not None else None]
            assert out in allowed or out.startswith("no reference value"), out
            continue
        assert out, f"{rule}: no expression"
        for _, expr in out:
            assert N.prometheus_name(form.metric) in expr
        kinds.add(next(k for k in ("above", "below", "outside_band", "relative_change") if getattr(rule, k)))
    assert {"above", "below"} <= kinds


def test_every_promql_form_parses_with_promtool(tmp_path):
    refs = _references()
    rules = [DerivedRule(r, "configured") for name in ALL for r in _rules_for(SERIES[name])]
    text = render(rules, model="m:1", references=refs, **KW)
    check_rules(text, tmp_path)
    assert text.count("- alert: ") > 2 * len(ALL)


# -- conditions and defaults ---------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_outside_band_is_accepted_exactly_where_the_series_has_a_band(name):
    s = SERIES[name]
    label = "accuracy" if s.label == "metric" else None
    if s.band is None:
        with pytest.raises(ValueError, match="no calibrated band"):
            RuleSpec(name="r", series=name, label=label, outside_band=True)
        return
    assert RuleSpec(name="r", series=name, label=label, outside_band=True).outside_band
    if s.tunable_rate:
        assert RuleSpec(name="r", series=name, label=label, outside_band=True, band_rate=0.001).band_rate == 0.001
    else:
        with pytest.raises(ValueError, match="fixed rate"):
            RuleSpec(name="r", series=name, label=label, outside_band=True, band_rate=0.001)


def test_every_series_is_watched_by_a_default_rule_or_says_why_it_is_opt_in():
    used = {d.rule.series for task in TASKS
            for d in default_rules(DefaultContext(task, 60, 0.01, 3.0, 1.0, multivariate=True))}
    assert used <= set(SERIES)
    for name, s in SERIES.items():
        assert (name in used) != (s.opt_in is not None), \
            f"{name}: {'a default rule watches it, yet it says opt_in' if name in used else 'unwatched, no opt_in'}"


def test_the_registry_refuses_duplicates_and_entries_without_their_reasons():
    s = SERIES["drift.share"]
    with pytest.raises(ValueError, match="already registered"):
        register_series(s)
    with pytest.raises(ValueError, match="no_gauge_reason"):
        replace(s, gauge=None)
    with pytest.raises(ValueError, match="no_promql_reason"):
        replace(s, promql=None)
    with pytest.raises(ValueError, match="<domain>.<figure>"):
        replace(s, name="share")
    assert replace(s, promql=None, no_promql_reason="reason").no_promql_reason == "reason"
