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


def test_one_batch_through_every_rule_gives_exactly_this_plan():
    """Golden test of plan_ingest (mutation testing found its messages and branches only
    loosely checked): one item per rule, with the reason each unknown or conflicting item
    is reported under."""
    rid1, rid2 = IDS.issue(2), IDS.issue(3)  # rid2's prediction is not logged yet
    items = _items(
        {"request_id": rid1, "index": 0, "outcome": "spam"},     # 0 labels p1
        {"request_id": rid1, "index": 0, "outcome": "spam"},     # 1 re-sent in the batch: duplicate
        {"request_id": rid1, "index": 0, "outcome": "ham"},      # 2 contradicts item 0
        {"instance_id": "t-1", "outcome": "ham"},                # 3 another key for p1, other label
        {"client_request_id": "c", "index": 0, "outcome": "spam"},  # 4 another key for p1, same label
        {"request_id": rid1, "index": 1, "outcome": "ham"},      # 5 p2 already labelled (final) under i-key
        {"request_id": rid1, "index": 5, "outcome": "spam"},     # 6 beyond the 2 logged rows
        {"request_id": "f" * 32, "index": 0, "outcome": "spam"},  # 7 never issued
        {"instance_id": "nobody", "outcome": "ham"},             # 8 no prediction carries it
        {"request_id": rid2, "index": 1, "outcome": "spam"},     # 9 issued, not logged yet: pending
        {"request_id": rid2, "index": 7, "outcome": "spam"},     # 10 beyond the 3 issued rows
        {"client_request_id": "w", "index": 0, "outcome": "spam"},   # 11 waiting under its key, other label
        {"client_request_id": "w2", "index": 0, "outcome": "spam"},  # 12 waiting under its key, same label
        {"client_request_id": "w2", "index": 0, "outcome": "spam"},  # 13 item 12 re-sent: the 4th duplicate
    )
    p1, p2 = Prediction(rid1, 0, 5, 10, 100.0), Prediction(rid1, 1, 5, 11, 100.0)
    waiting = {items[11].okey: StoredOutcome(items[11].okey, 0, None, 50.0, False, False),
               items[12].okey: StoredOutcome(items[12].okey, 1, None, 50.0, False, False)}
    plan = plan_ingest(items, Lookup(
        hits={items[0].okey: p1.key, items[3].okey: p1.key, items[4].okey: p1.key, items[5].okey: p2.key},
        sizes={items[6].okey: 2}, predictions={p1.key: p1, p2.key: p2},
        labels={p2.key: StoredOutcome("i:t-9", 1, None, 150.0, True, False, p2.key)}, stored=waiting))
    assert [(items.index(it), p) for it, p in plan.insert] == [(0, p1), (9, None)]
    assert plan.pending == 1 and plan.replace == () and plan.duplicate == 4
    assert plan.unknown == (
        (6, f"index 5 is beyond the 2 row(s) of the request with request_id {rid1!r}"),
        (7, f"request_id {'f' * 32!r} was never issued by this service (a typo?); send allow_early to keep it anyway"),
        (8, "no prediction carries instance_id 'nobody' yet; send allow_early to keep it until one does"),
        (10, f"index 7 is beyond the 3 row(s) of the request with request_id {rid2!r}"))
    assert plan.conflicts == (
        (2, "contradicts item 0 of this batch"),
        (3, "labels the same prediction as item 0 differently"),
        (5, "contradicts the outcome already stored for this prediction (under i-key)"),
        (11, "contradicts the outcome already stored under this key (waiting for its prediction)"))


def test_labels_are_compared_by_class_code_or_else_by_value():
    from monitoring.intake.labels import same_label

    assert same_label(1, None, 1, None) and not same_label(1, None, 0, None)
    assert not same_label(1, None, None, 1.0) and not same_label(None, 1.0, 1, None)  # a class is not a value
    assert same_label(None, 2.5, None, 2.5) and not same_label(None, 2.5, None, 2.6)
    assert same_label(0, 9.0, 0, 1.0)  # classification: the value plays no part


REG = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="regression")


def test_regression_labels_are_judged_by_value_on_every_path():
    """The same rules for a regressor, where labels are values (no class code): equal values
    are duplicates, different ones conflicts, in the batch, against a claim, a stored label
    and a waiting outcome; plus the boundaries (an outcome received at the very moment of its
    prediction is final; index == issued rows is beyond them; a logged caller-keyed request's
    size) and a stored conflict under the very key posted (no "under x-key" suffix)."""
    rid = IDS.issue(2)
    items = parse_outcomes([
        {"request_id": rid, "index": 0, "outcome": 1.5},           # 0 labels p1
        {"request_id": rid, "index": 0, "outcome": 1.5},           # 1 duplicate in the batch
        {"request_id": rid, "index": 0, "outcome": 2.5},           # 2 contradicts item 0
        {"instance_id": "t-1", "outcome": 1.5},                    # 3 same value for claimed p1: duplicate
        {"instance_id": "t-2", "outcome": 9.5},                    # 4 other value for claimed p1: conflict
        {"client_request_id": "s", "index": 0, "outcome": 4.0},    # 5 p2's stored label, same value
        {"client_request_id": "s", "index": 1, "outcome": 4.0},    # 6 p3's label at predicted_at, other value
        {"client_request_id": "w", "index": 0, "outcome": 7.0},    # 7 waiting under its key, same value
        {"client_request_id": "w", "index": 1, "outcome": 7.0},    # 8 waiting under its key, other value
        {"request_id": rid, "index": 2, "outcome": 1.0},           # 9 index == issued rows: beyond them
        {"client_request_id": "k", "index": 3, "outcome": 1.0},    # 10 logged request of 3 rows: beyond
    ], REG, 100, 1e9, request_ids=IDS)
    p1, p2, p3 = (Prediction(rid, 0, 0, 0, 100.0), Prediction("q", 0, 0, 1, 100.0), Prediction("q", 1, 0, 2, 100.0))
    stored = {items[5].okey: StoredOutcome(items[5].okey, None, 4.0, 150.0, True, False, p2.key),
              items[6].okey: StoredOutcome(items[6].okey, None, 5.0, 100.0, True, False, p3.key),
              items[7].okey: StoredOutcome(items[7].okey, None, 7.0, 50.0, False, False),
              items[8].okey: StoredOutcome(items[8].okey, None, 8.0, 50.0, False, False)}
    plan = plan_ingest(items, Lookup(
        hits={items[0].okey: p1.key, items[3].okey: p1.key, items[4].okey: p1.key},
        sizes={items[10].okey: 3}, predictions={p1.key: p1, p2.key: p2, p3.key: p3},
        labels={p2.key: stored[items[5].okey], p3.key: stored[items[6].okey]}, stored=stored))
    assert [(items.index(it), p) for it, p in plan.insert] == [(0, p1)]
    assert plan.duplicate == 4 and plan.replace == ()
    assert plan.conflicts == (
        (2, "contradicts item 0 of this batch"),
        (4, "labels the same prediction as item 0 differently"),
        (6, "contradicts the outcome already stored for this prediction"),
        (8, "contradicts the outcome already stored under this key (waiting for its prediction)"))
    assert plan.unknown == (
        (9, f"index 2 is beyond the 2 row(s) of the request with request_id {rid!r}"),
        (10, "index 3 is beyond the 3 row(s) of the request with client_request_id 'k'"))


def test_joining_by_value_skips_outcomes_whose_prediction_is_not_logged():
    p = Prediction("r", 0, 0, 0, 100.0)
    waiting = [StoredOutcome("i:none", None, 1.0, 10.0, False, False),   # no prediction yet: skipped
               StoredOutcome("i:a", None, 2.0, 20.0, False, False),
               StoredOutcome("i:b", None, 2.0, 30.0, False, False),
               StoredOutcome("i:c", None, 3.0, 40.0, False, False)]
    plan = plan_join(waiting, Lookup(hits={"i:a": p.key, "i:b": p.key, "i:c": p.key}, predictions={p.key: p}))
    assert plan.matched == (("i:a", p),) and plan.redundant == ("i:b",) and plan.conflicting == ("i:c",)
