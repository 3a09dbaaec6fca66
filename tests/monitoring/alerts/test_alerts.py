"""Alert rules: conditions, the state machine (hysteresis, duration, cooldown), the default
rules' budget, persistence, silences, acknowledgements, and one transition per window
whichever worker reports it."""

from __future__ import annotations

import math
import sys
import uuid

import numpy as np
import pytest

from monitoring.alerts.observers import observe_performance, observe_window
from monitoring.runtime.alert_engine import AlertEngine, AlertOptions
from monitoring.alerts import (AlertState, Budget, DefaultContext, DerivedRule, Obs, RuleContext, RuleSpec,
                               default_rules, evaluate_condition, merge_rules, step)
from monitoring.alerts.defaults import budget_of, consecutive_rate, performance_plan
from monitoring.stats.serving import LATENCY_BOUNDS, ServingSketch
from monitoring.store import Store


def rule(**kw) -> RuleSpec:
    base = dict(name="r", series="drift.share", above=0.5)
    base.update(kw)
    return RuleSpec(**base)


# -- conditions --------------------------------------------------------------------------

def test_each_condition_kind():
    assert evaluate_condition(rule(above=0.5), Obs(0.6)) is True
    assert evaluate_condition(rule(above=0.5), Obs(0.5)) is False
    assert evaluate_condition(rule(above=None, below=0.2), Obs(0.1)) is True
    assert evaluate_condition(rule(above=None, below=0.2), Obs(0.3)) is False
    band = rule(series="drift.score", above=None, outside_band=True)
    assert evaluate_condition(band, Obs(3.0, outside=True)) is True
    assert evaluate_condition(band, Obs(3.0, outside=False)) is False
    assert evaluate_condition(band, Obs(3.0, outside=None)) is None  # not computable: no data
    rel = rule(series="prediction.confidence", above=None, relative_change=0.1)
    assert evaluate_condition(rel, Obs(0.80, reference=0.95)) is True    # -15.8 %
    assert evaluate_condition(rel, Obs(0.90, reference=0.95)) is False   # -5.3 %
    assert evaluate_condition(rel, Obs(0.90, reference=None)) is None
    up = rule(series="prediction.confidence", above=None, relative_change=0.1, direction="up")
    assert evaluate_condition(up, Obs(0.80, reference=0.95)) is False    # a drop is not "up"
    assert evaluate_condition(up, Obs(1.2, reference=1.0)) is True
    zero = rule(series="quality.missing_rate", above=None, relative_change=0.5)
    assert evaluate_condition(zero, Obs(0.01, reference=0.0)) is True    # any change from 0 is infinite
    assert evaluate_condition(rule(), Obs(None)) is None
    assert evaluate_condition(rule(), Obs(math.nan)) is None


@pytest.mark.parametrize("kw, message", [
    (dict(above=1, below=2), "exactly one condition"),
    (dict(above=None), "exactly one condition"),
    (dict(series="system.cpu", above=None, outside_band=True), "no calibrated band"),
    (dict(series="drift.score", above=None, relative_change=0.2), "no reference value"),
    (dict(series="performance.realized", above=None, outside_band=True), "needs label"),
    (dict(series="drift.score", above=None, outside_band=True, band_rate=0.01), "fixed rate"),
    (dict(name="has space"), "pattern"),
    (dict(for_windows=0), "greater than or equal to 1"),
])
def test_malformed_rules_are_rejected_with_the_reason(kw, message):
    with pytest.raises(ValueError, match=message):
        rule(**kw)


# -- state machine -------------------------------------------------------------------

def run(r: RuleSpec, verdicts, start_state=None, t0=0.0, dt=60.0):
    st = start_state or AlertState()
    out = []
    for i, bad in enumerate(verdicts):
        st, tr = step(r, st, bad, st.last_window + 1, t0 + i * dt, t0 + (i + 1) * dt, t0 + (i + 1) * dt)
        out.append((st.state, tr.to if tr else None))
    return st, out


def test_a_single_noisy_window_does_not_fire_three_in_a_row_do():
    r = rule(for_windows=3, resolve_windows=2)
    _, out = run(r, [True, False, True, True, False])
    assert [s for s, _ in out] == ["pending", "inactive", "pending", "pending", "inactive"]
    assert all(t is None for _, t in out)
    st, out = run(r, [True, True, True, True])
    assert [s for s, _ in out] == ["pending", "pending", "firing", "firing"]
    assert [t for _, t in out] == [None, None, "firing", None]  # fires once, not per window
    assert st.seq == 1


def test_resolves_only_after_m_clean_windows():
    r = rule(for_windows=1, resolve_windows=3)
    st, out = run(r, [True, False, False, True, False, False, False])
    assert [s for s, _ in out] == ["firing", "firing", "firing", "firing", "firing", "firing", "resolved"]
    assert [t for _, t in out if t] == ["firing", "resolved"]
    assert st.seq == 2 and st.good == 0


def test_no_data_windows_neither_fire_nor_resolve():
    r = rule(for_windows=2, resolve_windows=2)
    _, out = run(r, [True, None, True, False, None, False])
    assert [t for _, t in out] == [None, None, "firing", None, None, "resolved"]


def test_for_seconds_needs_the_condition_to_last():
    r = rule(for_windows=1, for_seconds=150)
    _, out = run(r, [True, True, True], dt=60)  # pending since t=0; window ends at 60, 120, 180
    assert [t for _, t in out] == [None, None, "firing"]


def test_cooldown_holds_a_refire_back():
    r = rule(for_windows=1, resolve_windows=1, cooldown_seconds=300)
    st, out = run(r, [True, False, True, True, True, True, True], dt=60)
    # fired at t=60, resolved at 120; bad again at 180..: cooled only from t=360
    assert [t for _, t in out] == ["firing", "resolved", None, None, None, "firing", None]
    assert out[2][0] == "pending"


def test_a_window_counts_once():
    r = rule(for_windows=2)
    st, _ = step(r, AlertState(), True, 5, 0, 1, 1)
    again, tr = step(r, st, True, 5, 0, 1, 1)
    assert again == st and tr is None
    older, tr = step(r, st, True, 4, 0, 1, 1)
    assert older == st and tr is None


# -- default rules from the budget ------------------------------------------------------

def test_default_rules_are_derived_from_the_false_alert_budget():
    ctx = DefaultContext(task="classification", window_seconds=300, drift_alpha=0.01, band_sigmas=3.0,
                         false_alerts_per_week=1.0, multivariate=True)
    rules = {d.rule.name: d for d in default_rules(ctx)}
    assert set(rules) == {"feature_drift", "prediction_drift", "performance_drop", "error_rate", "latency_spike",
                          "missing_share_rise", "new_categories", "multivariate_drift"}
    b = Budget(1.0, 300, 8)
    assert b.windows_per_week == pytest.approx(2016)
    per = b.per_rule_window
    assert per == pytest.approx(1 / (8 * 2016))
    # no sizes known: independent windows, the fewest that fit the budget
    n = rules["feature_drift"].rule.for_windows
    assert 0.01 ** n <= per < 0.01 ** (n - 1)
    n_perf = rules["performance_drop"].rule.for_windows
    assert 0.00135 ** n_perf <= per < 0.00135 ** (n_perf - 1)
    assert rules["error_rate"].rule.band_rate == pytest.approx(per)
    assert rules["missing_share_rise"].rule.band_rate == pytest.approx(per)   # one feature
    assert rules["performance_drop"].rule.label == "accuracy"
    # the whole set's false alerts per week stay within the budget
    weekly = sum((0.01 ** rules[k].rule.for_windows) * b.windows_per_week
                 for k in ("feature_drift", "prediction_drift", "multivariate_drift"))
    weekly += (0.00135 ** n_perf + 4 * per) * b.windows_per_week
    assert weekly <= 1.0
    # a tighter budget or shorter windows need more evidence
    tight = {d.rule.name: d.rule for d in default_rules(DefaultContext("regression", 60, 0.01, 3.0, 0.01, False))}
    assert tight["feature_drift"].for_windows > n
    assert tight["performance_drop"].label == "mae"


def test_windows_closing_by_rows_count_in_the_budget_when_they_close_faster():
    by_time = Budget(1.0, 300, 7, window_rows=1000, rows_per_second=1.0)     # 1000 s per window: time wins
    by_rows = Budget(1.0, 300, 7, window_rows=1000, rows_per_second=100.0)   # 10 s per window
    assert by_time.windows_per_week == pytest.approx(2016)
    assert by_rows.windows_per_week == pytest.approx(7 * 24 * 3600 / 10)
    rules = {d.rule.name: d for d in default_rules(DefaultContext("classification", 300, 0.01, 3.0, 1.0, False,
                                                                  window_rows=1000, rows_per_second=100.0))}
    assert "closing by rows" in rules["feature_drift"].derivation
    assert rules["error_rate"].rule.band_rate == pytest.approx(by_rows.per_rule_window)


def test_consecutive_windows_sharing_a_reference_are_more_likely_than_alpha_to_the_n():
    assert consecutive_rate(0.01, 0.0, 3) == pytest.approx(1e-6)
    assert consecutive_rate(0.01, 1.0, 3) == pytest.approx(0.01)    # one shared error: waiting is no help
    rates = [consecutive_rate(0.01, rho, 2) for rho in (0.0, 0.2, 0.5, 0.8)]
    assert rates == sorted(rates) and rates[0] == pytest.approx(1e-4) and rates[-1] > 2e-3
    # checked by simulation: a shared N(0, rho) and independent N(0, 1 - rho) parts, 2 in a row
    rng = np.random.default_rng(0)
    shared = rng.normal(size=400_000) * np.sqrt(0.5)
    a, b = (shared + rng.normal(size=(2, 400_000)) * np.sqrt(0.5)) > 2.326
    assert (a & b).mean() == pytest.approx(consecutive_rate(0.01, 0.5, 2), rel=0.15)


def test_drift_rules_wait_for_more_windows_when_windows_are_large_against_the_reference():
    def n(reference_rows: int) -> DerivedRule:
        return {d.rule.name: d for d in default_rules(DefaultContext(
            "classification", 300, 0.01, 3.0, 1.0, False, window_rows=1000, reference_rows=reference_rows,
            validation_rows=reference_rows))}["feature_drift"]
    big, small = n(50_000), n(2_000)
    assert big.rule.for_windows < small.rule.for_windows
    assert "E[p^" in big.derivation and "correlation 0.02" in big.derivation
    capped = n(100)
    assert "over budget" in capped.derivation


def test_the_performance_band_widens_where_waiting_cannot_fit_the_budget():
    ctx = DefaultContext("classification", 300, 0.01, 3.0, 1.0, False, window_rows=20_000, validation_rows=300)
    k, windows, p = performance_plan(ctx)
    assert k > 3.0 and windows == 3 and p <= budget_of(ctx).per_rule_window * 1.001
    k_big, _, _ = performance_plan(DefaultContext("classification", 300, 0.01, 3.0, 1.0, False, window_rows=1000,
                                                  validation_rows=50_000))
    assert k_big == 3.0


def test_configured_rules_override_and_disable_defaults():
    ctx = DefaultContext("classification", 300, 0.01, 3.0, 1.0, False)
    merged = merge_rules(default_rules(ctx), [RuleSpec(name="latency_spike", series="serving.latency_p99", above=0.5),
                                              RuleSpec(name="error_rate", series="serving.error_rate",
                                                       enabled=False),
                                              RuleSpec(name="slow_cpu", series="system.cpu", above=1.5)])
    by = {d.rule.name: d for d in merged}
    assert "error_rate" not in by
    assert by["latency_spike"].rule.above == 0.5 and by["latency_spike"].derivation == "configured"
    assert "slow_cpu" in by and "feature_drift" in by


# -- observations ------------------------------------------------------------------

CTX = RuleContext(features=("a", "b"), classes=("0", "1"), metrics=("accuracy",), reference_rows=1000,
                  drift_alpha=0.01, error_rate=0.01)


def report(wid: int, flagged=(), rows=100, serving=None, **extra) -> dict:
    feats = [{"feature": f, "score": 5.0 if f in flagged else 0.2, "flagged": f in flagged} for f in ("a", "b")]
    return {"window_id": wid, "rows": rows, "too_small": False, "features": feats, "share_drifted": len(flagged) / 2,
            "multivariate": None, "quality": [], "predictions": None, "started_at": 100.0 * wid,
            "ended_at": 100.0 * wid + 90, "serving": serving or {}, **extra}


def test_error_rate_band_is_a_binomial_test():
    r = RuleSpec(name="e", series="serving.error_rate", outside_band=True, band_rate=1e-4)
    ok = observe_window(r, report(0, serving={"requests": 1000, "server_errors": 15}), CTX)[""]
    bad = observe_window(r, report(0, serving={"requests": 1000, "server_errors": 40}), CTX)[""]
    assert ok.outside is False and bad.outside is True           # 1.5 % is noise at 1 %; 4 % is not
    few = observe_window(r, report(0, serving={"requests": 3, "server_errors": 1}), CTX)[""]
    assert few.outside is False                                     # one failure in three is not evidence


def latency_hist(ms_values) -> dict:
    s = ServingSketch()
    import bisect
    for v in ms_values:
        s.latency[bisect.bisect_left(LATENCY_BOUNDS, v / 1000)] += 1
    return {str(i): c for i, c in enumerate(s.latency) if c}


def test_latency_spike_needs_history_and_a_real_shift():
    import numpy as np

    rng = np.random.default_rng(0)
    r = RuleSpec(name="l", series="serving.latency_p99", outside_band=True, band_rate=1e-4)
    normal = lambda n: latency_hist(rng.lognormal(np.log(10), 0.3, n))  # noqa: E731  ~10 ms
    hist = {"history": [[i, normal(300)] for i in range(4)]}
    same = observe_window(r, report(9, serving={"requests": 300, "server_errors": 0, "latency": normal(300)}), CTX,
                          hist)[""]
    slow = observe_window(r, report(9, serving={"requests": 300, "server_errors": 0,
                                                "latency": latency_hist(rng.lognormal(np.log(40), 0.3, 300))}),
                          CTX, hist)[""]
    assert same.outside is False and slow.outside is True
    assert slow.value > 3 * same.value
    cold = observe_window(r, report(9, serving={"requests": 300, "latency": normal(300)}), CTX,
                          {"history": hist["history"][:2]})[""]
    assert cold.outside is None  # too little history: no verdict


def test_performance_observations_wait_for_final_windows():
    r = RuleSpec(name="p", series="performance.realized", label="accuracy", outside_band=True)
    res = {"window_id": 3, "final": False, "status": "ok", "alerting": True, "realized": {"accuracy": 0.5},
           "baseline": {"accuracy": 0.95}, "band": {"accuracy": [0.9, 1.0]}, "band_status": {"accuracy": "below"},
           "degraded": ["accuracy"], "labelled": 100, "predictions": 100}
    assert observe_performance(r, res) == {}
    obs = observe_performance(r, {**res, "final": True})["accuracy"]
    assert obs.outside is True and obs.value == 0.5 and obs.reference == 0.95
    ok = observe_performance(r, {**res, "final": True, "realized": {"accuracy": 0.93}, "degraded": [],
                                 "band_status": {"accuracy": "within"}})["accuracy"]
    assert ok.outside is False


# -- the engine: store, outbox, silences, acknowledgements -------------------------

from tests.support.backends import BACKENDS, PG


#: The model the engine tests alert on: a fresh name for every test (``fresh_model`` below),
#: so tests sharing the Postgres database never see nor delete each other's rows.
MODEL = "m:1"


@pytest.fixture(autouse=True)
def fresh_model(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "MODEL", f"m:{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'v.db'}" if request.param == "sqlite" else PG)
    yield s
    s.dispose()


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def engine(store, clock, rules=None, **kw) -> AlertEngine:
    rules = rules or [RuleSpec(name="drift", series="drift.score", outside_band=True, for_windows=2,
                               resolve_windows=2)]
    return AlertEngine(store, MODEL, [DerivedRule(r, "test") for r in rules], CTX,
                       AlertOptions(sinks=("log", "webhook:0"), trace_url="http://traces/{trace_id}"),
                       clock=clock, **kw)


def feed(eng, clock, verdicts, start=0, feature="a"):
    out = []
    for i, bad in enumerate(verdicts):
        clock.t += 100
        out += eng.on_window(report(start + i, flagged=(feature,) if bad else ()))
    return out


def test_transitions_are_persisted_with_one_outbox_row_per_sink(store):
    clock = Clock()
    eng = engine(store, clock)
    trs = feed(eng, clock, [True, True, True])
    assert [(r, i, t.to) for r, i, t in trs] == [("drift", "a", "firing")]
    rows = store.alerts.outbox_rows(MODEL)
    assert sorted(r["sink"] for r in rows) == ["log", "webhook:0"]
    assert rows[0]["key"].startswith(f"{MODEL}/drift/a/1/firing#")
    (alert,) = [a for a in eng.view()["firing"]]
    assert alert["rule"] == "drift" and alert["instance"] == "a" and alert["evidence"]["window"]["id"] == 1
    assert alert["evidence"]["threshold"]["band"].startswith("flagged")


def test_state_survives_a_restart_without_refiring(store, tmp_path):
    clock = Clock()
    feed(engine(store, clock), clock, [True, True])
    assert len(store.alerts.outbox_rows(MODEL)) == 2
    store.dispose()
    again = Store(store.url)  # a new process: new store connection, new engine
    eng2 = engine(again, clock)
    assert eng2.on_window(report(1, flagged=("a",))) == []       # the same window again: ignored
    assert feed(eng2, clock, [True, True], start=2) == []          # still firing: nothing new
    assert len(again.alerts.outbox_rows(MODEL)) == 2
    trs = feed(eng2, clock, [False, False], start=4)
    assert [t.to for _, _, t in trs] == ["resolved"]
    assert len(again.alerts.outbox_rows(MODEL)) == 4
    again.dispose()


def test_two_workers_reporting_the_same_window_make_one_transition(store):
    clock = Clock()
    a, b = engine(store, clock), engine(Store(store.url), clock)
    for wid in range(3):
        clock.t += 100
        r = report(wid, flagged=("a",))
        a.on_window(r)
        b.on_window(r)                                             # e.g. performance scored twice
    assert len(store.alerts.outbox_rows(MODEL)) == 2
    assert [e["state"] for e in store.alerts.events(MODEL)] == ["firing"]


def test_silence_holds_notifications_until_it_ends(store):
    clock = Clock()
    eng = engine(store, clock)
    sid = store.alerts.add_silence(MODEL, "drift", None, clock.t + 1000, "deploying", "ops", clock.t)
    feed(eng, clock, [True, True])
    assert store.alerts.outbox_rows(MODEL) == []                          # fired while silenced: not sent
    assert eng.view()["firing"][0]["notified_state"] is None
    assert eng.tick(force=True) == 0                               # still silenced
    assert store.alerts.end_silence(MODEL, sid, clock.t)
    assert eng.tick(force=True) == 2                               # silence over, still firing: announce
    assert eng.tick(force=True) == 0                               # once
    assert [r["key"].split("#")[0] for r in store.alerts.outbox_rows(MODEL)] == [f"{MODEL}/drift/a/1/firing"] * 2


def test_resolution_of_a_silenced_alert_that_was_never_announced_is_not_sent(store):
    clock = Clock()
    eng = engine(store, clock)
    store.alerts.add_silence(MODEL, "*", None, clock.t + 10_000, None, None, clock.t)
    feed(eng, clock, [True, True, False, False])
    assert store.alerts.outbox_rows(MODEL) == []
    assert [e["state"] for e in store.alerts.events(MODEL)] == ["resolved", "firing"]


def test_acknowledge_stops_repeats(store):
    clock = Clock()
    r = RuleSpec(name="drift", series="drift.score", outside_band=True, repeat_seconds=600)
    eng = engine(store, clock, rules=[r])
    feed(eng, clock, [True])
    assert len(store.alerts.outbox_rows(MODEL)) == 2
    clock.t += 601
    assert eng.tick(force=True) == 2                               # unacknowledged: repeated
    assert store.alerts.acknowledge(MODEL, "drift", "a", "alice", clock.t) == 1
    clock.t += 601
    assert eng.tick(force=True) == 0                               # acknowledged: quiet
    view = eng.view()
    assert view["firing"][0]["acknowledged_by"] == "alice"
    assert "acknowledged" in [e["state"] for e in view["recent"]]
    feed(eng, clock, [False], start=1)                             # resolves: the acknowledgement goes with it
    assert store.alerts.all(MODEL)[0].acked_at is None


def test_store_outage_defers_the_window_and_applies_it_later(store, monkeypatch):
    from monitoring.store import StoreUnavailable

    clock = Clock()
    eng = engine(store, clock, rules=[RuleSpec(name="drift", series="drift.score", outside_band=True)])
    real = store.alerts.transaction

    def down(*a, **k):
        raise StoreUnavailable("OperationalError: database is locked")

    monkeypatch.setattr(store.alerts, "transaction", down)
    assert eng.on_window(report(0, flagged=("a",))) == []
    assert eng.errors == 1
    monkeypatch.setattr(store.alerts, "transaction", real)
    eng.tick(force=True)
    assert [e["state"] for e in store.alerts.events(MODEL)] == ["firing"]


def test_retention_removes_old_history_and_sent_notifications_only(store):
    clock = Clock()
    eng = engine(store, clock)
    feed(eng, clock, [True, True])                                  # firing: 2 outbox rows, 1 event
    (done, pending) = store.alerts.claim_outbox(MODEL, "w", clock.t, 10.0)
    store.alerts.outbox_done(done.id, "w", clock.t)
    deleted = store.purge(MODEL, clock.t + 1)
    assert deleted["alert_history"] == 2                            # the event and the delivered row
    assert [r["id"] for r in store.alerts.outbox_rows(MODEL)] == [pending.id]  # undelivered: kept
    assert store.alerts.events(MODEL) == []
    assert [a.state.state for a in store.alerts.all(MODEL)] == ["firing"]   # state is not history


def test_latency_rule_learns_its_baseline_from_normal_windows_only(store):
    import numpy as np

    rng = np.random.default_rng(3)
    clock = Clock()
    r = RuleSpec(name="lat", series="serving.latency_p99", outside_band=True, band_rate=1e-4, resolve_windows=1)
    eng = engine(store, clock, rules=[r])

    def window(wid, ms):
        clock.t += 100
        sv = {"requests": 300, "server_errors": 0, "latency": latency_hist(rng.lognormal(np.log(ms), 0.3, 300))}
        return eng.on_window(report(wid, serving=sv))

    for wid in range(4):                       # history builds up; no verdict before 3 windows
        assert window(wid, 10) == []
    assert [t.to for _, _, t in window(4, 40)] == ["firing"]
    assert window(5, 40) == []                 # still slow: still firing, and not learnt as normal
    (alert,) = store.alerts.all(MODEL)
    assert [h[0] for h in alert.data["history"]] == [0, 1, 2, 3]
    slow, of = alert.evidence["threshold"]["bound"].split(" requests slower than the recent p99")[0].split(" of ")
    assert of == "300" and int(slow) >= 290
    assert [t.to for _, _, t in window(6, 10)] == ["resolved"]


@pytest.mark.parametrize("rule, message", [
    ({"name": "x", "series": "drift.score", "label": "no_such_feature", "outside_band": True},
     "rule 'x': unknown feature 'no_such_feature'"),
    ({"name": "y", "series": "performance.realized", "label": "mse", "outside_band": True},
     "rule 'y': unknown metric 'mse'; known: accuracy"),
])
def test_vigil_serve_refuses_rules_that_name_what_the_model_lacks(demo_tags, monkeypatch, rule, message):
    import json

    from typer.testing import CliRunner

    from service.cli import app

    monkeypatch.setenv("VIGIL_ALERT_RULES", json.dumps([rule]))
    monkeypatch.setattr("os.execvpe", lambda *a: pytest.fail("vigil serve went on to start the server"))
    r = CliRunner().invoke(app, ["serve", demo_tags["classifier"]])
    assert r.exit_code == 2
    assert message in " ".join(r.output.split())
