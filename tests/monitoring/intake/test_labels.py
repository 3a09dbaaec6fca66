"""Request ids, feedback parsing that reports every problem, and the label rules without a
database (issue 18 item 7; issue 12 items 5 and 7)."""

from __future__ import annotations

import pytest

from monitoring.intake.labels import Lookup, Prediction, StoredOutcome, plan_ingest, plan_join
from monitoring.intake.outcomes import FeedbackInvalid, RequestIds, parse_outcomes
from monitoring.schema import FeatureSpec, ModelSchema

CLF = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="classification", classes=("ham", "spam"))
IDS = RequestIds(b"k1")


def test_request_ids_record_rows_and_fail_their_check_when_mistyped():
    rid = IDS.issue(7)
    assert len(rid) == 32 and int(rid, 16) >= 0 and IDS.rows_of(rid) == 7
    typo = rid[:5] + ("0" if rid[5] != "0" else "1") + rid[6:]
    assert IDS.rows_of(typo) is None
    assert RequestIds(b"k2").rows_of(rid) is None  # another model's (or store's) key
    assert IDS.rows_of(rid.upper()) is None and IDS.rows_of(rid[:31]) is None and IDS.rows_of("z" * 32) is None
    assert IDS.rows_of(IDS.issue(10**9)) == RequestIds.MAX_ROWS
    assert len({IDS.issue(1) for _ in range(1000)}) == 1000


def test_every_problem_of_every_item_is_reported():
    items = [{"request_id": "a", "outcome": "eggs", "observed_at": "yesterday", "note": 1},
             {"instance_id": "t", "index": 3, "outcome": "spam"},
             {"request_id": "a", "index": 0, "outcome": "spam"}]
    with pytest.raises(FeedbackInvalid) as e:
        parse_outcomes(items, CLF, 10, 1e9)
    messages = [(err["item"], err["message"]) for err in e.value.errors]
    assert [i for i, _ in messages] == [0, 0, 0, 0, 1]
    text = " ".join(m for _, m in messages)
    for needle in ("unknown field", "not a class", "ISO-8601", "'index'", "not instance_id"):
        assert needle in text


def test_parsing_checks_request_ids_and_marks_early_outcomes():
    rid = IDS.issue(3)
    a, b = parse_outcomes([{"request_id": rid, "index": 0, "outcome": "spam"},
                           {"request_id": "f" * 32, "index": 0, "outcome": "ham"}], CLF, 10, 1e9,
                          request_ids=IDS, allow_early=True)
    assert (a.issued_rows, b.issued_rows, a.early) == (3, None, True)


def _items(*specs):
    return parse_outcomes([dict(s) for s in specs], CLF, 100, 1e9, request_ids=IDS)


def test_a_provisional_label_is_replaced_and_a_final_one_is_a_conflict():
    pred = Prediction("r", 0, 0, 0, predicted_at=100.0)
    (item,) = _items({"client_request_id": "c", "index": 0, "outcome": "ham"})
    for received, replaced in ((50.0, True), (150.0, False)):
        label = StoredOutcome("c:c:0", 1, None, received, True, False, pred.key)
        plan = plan_ingest([item], Lookup(hits={"c:c:0": pred.key}, predictions={pred.key: pred},
                                          labels={pred.key: label}, stored={"c:c:0": label}))
        assert (plan.replace == ("c:c:0",)) is replaced and bool(plan.conflicts) is not replaced


def test_joining_gives_the_prediction_to_the_earliest_outcome():
    pred = Prediction("r", 0, 0, 0, 100.0)
    waiting = [StoredOutcome("i:t", 0, None, 20.0, False, False), StoredOutcome("c:c:0", 1, None, 10.0, False, False),
               StoredOutcome("r:r:0", 1, None, 30.0, False, False)]
    plan = plan_join(waiting, Lookup(hits={w.okey: pred.key for w in waiting}, predictions={pred.key: pred}))
    assert [k for k, _ in plan.matched] == ["c:c:0"]
    assert plan.redundant == ("r:r:0",) and plan.conflicting == ("i:t",)
