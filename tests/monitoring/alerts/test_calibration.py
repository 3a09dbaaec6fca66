"""The fast subset of benchmarks/calibration_quality.py: exact-null and shifted streams
through the rate rules' observers and the alert state machine, a fresh reference per
stream. The tests alone (no floor) hold their rate from both sides: not liberal, and not so
conservative that they give power away; the default rules stay within their budget."""

from __future__ import annotations

import pytest

from monitoring.alerts import Budget
from tests.support.calibration import rule_for, run

ALPHA = 0.01
B = Budget(1.0, 300, 7).per_rule_window        # the defaults' per rule and window budget


@pytest.mark.parametrize("kind, n, m", [("missing", 300, 1000), ("out_of_range", 300, 1000)])
def test_a_rate_test_without_its_floor_holds_its_rate_on_exact_nulls(kind, n, m):
    null = run(kind, n, m, rule_for(kind, ALPHA, effect_floor=0.0), refs=250, windows=10, seed=1)["null"]
    low, high = null.interval()
    assert low <= ALPHA, (null, low, high)                 # not liberal
    assert high >= ALPHA / 4, (null, low, high)            # and not so conservative that power is given away
    cp_low, cp_high = null.first_window_interval()
    assert cp_low <= ALPHA <= cp_high * 4


@pytest.mark.parametrize("kind, n, m", [("missing", 300, 1000), ("missing", 5000, 50), ("unseen", 300, 1000),
                                        ("class_share_rare", 5000, 1000), ("class_share_balanced", 5000, 1000)])
def test_the_default_rules_stay_within_the_budget_on_nulls_and_near_nulls(kind, n, m):
    out = run(kind, n, m, rule_for(kind, B), refs=120, windows=20, seed=2)
    assert out["null"].interval()[0] <= B and out["null"].expected <= B, out["null"]
    # a near-null (+1 point on 10 %, 1 % -> 1.2 %, 50 % -> 52 %) is below half the floor,
    # so the floor's minimum-effect test keeps it within the budget too
    assert out["near"].expected <= B, out["near"]


def test_shifts_beyond_the_floor_are_caught_in_most_windows():
    out = run("missing", 5000, 1000, rule_for("missing", B / 10), refs=50, windows=100, seed=3)
    assert out["shift"].expected > 0.9 and out["null"].alerts == 0           # 10 % -> 22 % missing
    balanced = run("class_share_balanced", 50_000, 1000, rule_for("class_share_balanced", B), refs=30,
                   windows=20, seed=3)
    assert balanced["shift"].expected > 0.6                                    # 50 % -> 60 %
