"""The Prometheus export: each rule kind becomes the PromQL over Vigil's exported series."""

from __future__ import annotations


import yaml

from monitoring.alerts import DefaultContext, DerivedRule, RuleSpec, default_rules
from monitoring.stats.performance import HIGHER_IS_BETTER
from monitoring.alerts.promql import expressions, render
from tests.support.promtool import check_rules

KW = dict(window_seconds=60, drift_alpha=0.01, error_rate=0.01, higher_is_better=HIGHER_IS_BETTER,
          references={"prediction.confidence": {"": 0.9}, "quality.missing_rate": {"a": 0.0, "b": 0.1}})


def expr(**rule):
    return expressions(RuleSpec(name="r", **rule), **KW)


def test_each_condition_kind_has_its_promql():
    assert expr(series="drift.score", outside_band=True) == [(None, "vigil_drift_score >= 1")]
    assert expr(series="drift.score", label="a", above=2) == [("a", 'vigil_drift_score{feature="a"} > 2.0')]
    assert expr(series="prediction.drift", outside_band=True) == [(None, "vigil_prediction_drift_p_value <= 0.01")]
    assert expr(series="prediction.confidence", relative_change=0.1, direction="down") == [
        (None, "(vigil_prediction_confidence_mean - 0.9) < -0.09000000000000001")]
    per_feature = expr(series="quality.missing_rate", relative_change=0.5)
    assert per_feature == [("a", 'vigil_quality_missing_rate{feature="a"} != 0'),
                           ("b", 'abs(vigil_quality_missing_rate{feature="b"} - 0.1) > 0.05')]
    assert expr(series="performance.realized", label="accuracy", outside_band=True) == [
        ("accuracy", 'vigil_performance_realized{metric="accuracy"} < vigil_performance_band_lower{metric="accuracy"}')]
    assert expr(series="performance.realized", label="mae", outside_band=True)[0][1].endswith(
        '> vigil_performance_band_upper{metric="mae"}')
    (_, err), = expr(series="serving.error_rate", outside_band=True, band_rate=0.001)
    assert 'increase(vigil_requests_total{endpoint="predict",outcome="server_error"}[60s])' in err
    assert "3.09" in err  # z for 0.001
    (_, lat), = expr(series="serving.latency_p95", above=0.25)
    assert lat == ('histogram_quantile(0.95, sum by (le) (rate(vigil_request_duration_bucket{endpoint="predict"}'
                   '[60s]))) > 0.25')
    assert "no PromQL form" in expr(series="quality.unseen_rate", outside_band=True)


def test_rendered_file_keeps_the_hysteresis_and_lists_what_it_skips(tmp_path):
    rules = default_rules(DefaultContext("classification", 60, 0.01, 3.0, 1.0, True))
    rules.append(DerivedRule(RuleSpec(name="unseen", series="quality.unseen_rate", outside_band=True), "configured"))
    text = render(rules, model="m:1", window_seconds=60, drift_alpha=0.01, error_rate=0.01,
                  higher_is_better=HIGHER_IS_BETTER)
    assert "#   - unseen: the quality.unseen_rate band" in text
    doc = yaml.safe_load(text)
    by = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    drift = next(d.rule for d in rules if d.rule.name == "feature_drift")
    assert by["vigil_feature_drift"]["for"] == f"{(drift.for_windows - 1) * 60}s"
    assert by["vigil_feature_drift"]["keep_firing_for"] == f"{(drift.resolve_windows - 1) * 60}s"
    assert by["vigil_feature_drift"]["labels"] == {"severity": "warning", "vigil_rule": "feature_drift",
                                                  "vigil_model": "m:1"}
    assert "budget" in by["vigil_error_rate"]["annotations"]["vigil_derivation"]
    check_rules(text, tmp_path)
