"""Outcome parsing and storage: validation, idempotence, atomic batches, late joins,
caller ids, expiry. On SQLite, and on Postgres when VIGIL_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from monitoring.intake.outcomes import FeedbackInvalid, parse_outcomes
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.store import OutcomeConflict

CLF = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="classification", classes=("ham", "spam"))
REG = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="regression")
NOW = time.time()


def model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def log(store, m, rid, n, window=0, t=NOW, instance_ids=None, client=None):
    store.outcomes.log_predictions([{
        "model": m, "request_id": rid, "row_index": i, "seq": i, "window_id": window, "predicted_at": t,
        "client_request_id": client, "instance_id": None if instance_ids is None else instance_ids[i],
        "class_code": i % 2, "value": None, "proba": np.array([0.4, 0.6], np.float32).tobytes(),
        "trace_id": "0" * 32, "features": None} for i in range(n)])


# -- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("items, needle", [
    ([{"request_id": "a", "index": 0, "outcome": "eggs"}], "not a class"),
    ([{"request_id": "a", "index": 0, "outcome": 1}], "not a class"),
    ([{"request_id": "a", "index": 0, "outcome": "spam", "note": "x"}], "unknown field"),
    ([{"request_id": "a", "outcome": "spam"}], "'index'"),
    ([{"request_id": "a", "index": -1, "outcome": "spam"}], "'index'"),
    ([{"index": 0, "outcome": "spam"}], "exactly one of"),
    ([{"request_id": "a", "instance_id": "b", "index": 0, "outcome": "spam"}], "exactly one of"),
    ([{"request_id": "a", "index": 0}], "'outcome' is missing"),
    ([{"request_id": "a", "index": 0, "outcome": "spam", "observed_at": "yesterday"}], "ISO-8601"),
    ([{"request_id": "a", "index": 0, "outcome": "spam", "observed_at": NOW + 86400}], "future"),
    (["spam"], "must be an object"),
    ([], "empty"),
    ("spam", "must be an array"),
])
def test_bad_outcomes_are_rejected_with_the_item_named(items, needle):
    with pytest.raises(FeedbackInvalid) as e:
        parse_outcomes(items, CLF, max_items=100, now=NOW)
    assert needle in str(e.value) and e.value.status == 422


def _codes(schema, outcomes):
    items = [{"request_id": "a", "index": i, "outcome": o} for i, o in enumerate(outcomes)]
    return [o.class_code for o in parse_outcomes(items, schema, max_items=100, now=NOW)]


def _clf(*classes):
    return ModelSchema((FeatureSpec("x", "numeric", "float"),), task="classification", classes=classes)


def test_a_numeric_outcome_matches_its_class_by_value_as_json_numbers_do():
    assert _codes(_clf(0.0, 1.0), [1, 1.0, 0, 0.0]) == [1, 1, 0, 0]  # a model trained on a float target
    assert _codes(_clf(0, 1), [1.0, 0]) == [1, 0]
    assert _codes(_clf(False, True), [True, False]) == [1, 0]
    assert _codes(_clf("0", "1"), ["1"]) == [1]


@pytest.mark.parametrize("classes, outcome, hint", [
    ((0.0, 1.0), "1", "send the outcome as a JSON number"),  # a string is not a number, even "1"
    ((0.0, 1.0), True, ""),  # True == 1 in Python, not in JSON
    ((0.0, 1.0), 0.5, ""),
    ((False, True), 1, ""),
    (("0", "1"), 1, ""),
])
def test_an_outcome_of_another_json_type_is_not_a_class(classes, outcome, hint):
    with pytest.raises(FeedbackInvalid) as e:
        _codes(_clf(*classes), [outcome])
    assert "is not a class of this model" in str(e.value) and hint in str(e.value)


def test_regression_outcomes_must_be_finite_numbers():
    with pytest.raises(FeedbackInvalid, match="finite number"):
        parse_outcomes([{"request_id": "a", "index": 0, "outcome": "3.5"}], REG, 10, NOW)
    with pytest.raises(FeedbackInvalid, match="finite number"):
        parse_outcomes([{"request_id": "a", "index": 0, "outcome": True}], REG, 10, NOW)
    (o,) = parse_outcomes([{"request_id": "a", "index": 0, "outcome": 3}], REG, 10, NOW)
    assert o.value == 3.0 and o.class_code is None


def test_too_many_outcomes_is_413():
    with pytest.raises(FeedbackInvalid) as e:
        parse_outcomes([{"request_id": "a", "index": i, "outcome": "spam"} for i in range(11)], CLF, 10, NOW)
    assert e.value.status == 413


def test_every_bad_item_is_listed():
    items = [{"request_id": "a", "index": 0, "outcome": "spam"}, {"request_id": "a", "index": 1, "outcome": "x"},
             {"request_id": "a", "index": 2, "outcome": "y"}]
    with pytest.raises(FeedbackInvalid) as e:
        parse_outcomes(items, CLF, 10, NOW)
    assert [err["item"] for err in e.value.errors] == [1, 2]


def test_observed_at_accepts_iso_and_epoch():
    a, b = parse_outcomes([{"request_id": "a", "index": 0, "outcome": "spam", "observed_at": "2026-01-01T00:00:00Z"},
                           {"request_id": "a", "index": 1, "outcome": "ham", "observed_at": 1_700_000_000}],
                          CLF, 10, NOW)
    assert a.observed_at == 1767225600.0 and b.observed_at == 1_700_000_000.0


# -- storage -----------------------------------------------------------------------------------

def outs(rid, codes, early=True, **kw):
    """Outcomes for request ``rid``; ``early``: kept even before (or without) its prediction
    (these ids are not issued by a RequestIds, so without it they would be reported unknown)."""
    return parse_outcomes([{"request_id": rid, "index": i, "outcome": CLF.classes[c], **kw}
                           for i, c in enumerate(codes)], CLF, 1000, NOW, allow_early=early)


def test_ingest_counts_and_resend_is_duplicate(store):
    m = model()
    log(store, m, "r1", 3)
    res = store.outcomes.ingest(m, outs("r1", [1, 0, 1]) + outs("r2", [1]), NOW)
    assert (res.accepted, res.duplicate, res.pending) == (4, 0, 1)
    again = store.outcomes.ingest(m, outs("r1", [1, 0, 1]), NOW)
    assert (again.accepted, again.duplicate, again.pending) == (0, 3, 0)
    assert store.outcomes.counts(m) == {"matched": 3, "pending": 1, "expired": 0, "conflicting": 0}


def test_conflicting_batch_is_rejected_whole(store):
    m = model()
    store.outcomes.ingest(m, outs("r1", [1]), NOW)
    batch = outs("r9", [0, 1]) + outs("r1", [0])  # the last contradicts the stored outcome
    with pytest.raises(OutcomeConflict) as e:
        store.outcomes.ingest(m, batch, NOW)
    assert [pos for pos, _ in e.value.conflicts] == [2]
    assert store.outcomes.counts(m) == {"matched": 0, "pending": 1, "expired": 0, "conflicting": 0}  # nothing of the batch stored


def test_contradiction_inside_one_batch_is_a_conflict(store):
    m = model()
    with pytest.raises(OutcomeConflict):
        store.outcomes.ingest(m, outs("r1", [1]) + outs("r1", [0]), NOW)
    assert store.outcomes.counts(m)["pending"] == 0


def test_outcome_before_prediction_is_joined_when_it_arrives(store):
    m = model()
    res = store.outcomes.ingest(m, outs("early", [1, 1]), NOW)
    assert res.pending == 2
    log(store, m, "early", 2, window=7)  # logging the prediction joins what waited for it
    assert store.outcomes.counts(m)["matched"] == 2
    assert store.outcomes.match_pending(m, expire_before=0) == (0, 0)
    data = store.outcomes.window_predictions(m, 7)
    assert data["labelled"].tolist() == [True, True] and data["true_code"].tolist() == [1.0, 1.0]


def test_caller_ids_join(store):
    m = model()
    log(store, m, "r1", 2, instance_ids=["txn-1", "txn-2"], client="client-9")
    items = parse_outcomes([{"instance_id": "txn-2", "outcome": "spam"},
                            {"client_request_id": "client-9", "index": 0, "outcome": "ham"}], CLF, 10, NOW)
    res = store.outcomes.ingest(m, items, NOW)
    assert (res.accepted, res.pending) == (2, 0)
    data = store.outcomes.window_predictions(m, 0)
    assert data["labelled"].all() and sorted(data["true_code"].tolist()) == [0.0, 1.0]


def test_unmatched_outcomes_expire_and_are_counted(store):
    m = model()
    store.outcomes.ingest(m, outs("never", [1]), NOW)
    assert store.outcomes.match_pending(m, expire_before=NOW - 50) == (0, 0)  # received at NOW, not old enough
    assert store.outcomes.match_pending(m, expire_before=NOW + 1) == (0, 1)
    assert store.outcomes.counts(m) == {"matched": 0, "pending": 0, "expired": 1, "conflicting": 0}


def test_relogging_a_prediction_is_harmless(store):
    m = model()
    log(store, m, "r1", 2)
    log(store, m, "r1", 3)  # a retried flush: the 2 rows already there are skipped
    assert store.outcomes.window_prediction_count(m, 0) == 3


def test_group_commit_isolates_a_conflicting_request(store):
    import threading

    from monitoring.runtime.committer import GroupCommitter

    m = model()
    store.outcomes.ingest(m, outs("taken", [1]), NOW)
    gc = GroupCommitter(store, m)
    results = {}

    def post(name, items):
        try:
            results[name] = gc.submit(items, timeout=30)
        except OutcomeConflict as exc:
            results[name] = exc

    batches = {f"ok{i}": outs(f"q{i}", [0, 1]) for i in range(6)}
    batches["bad"] = outs("fresh", [1]) + outs("taken", [0])
    threads = [threading.Thread(target=post, args=kv) for kv in batches.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["bad"], OutcomeConflict)
    assert all(results[f"ok{i}"].accepted == 2 for i in range(6))
    assert store.outcomes.counts(m)["pending"] == 1 + 12  # "fresh" of the bad batch was rolled back


def test_retention_deletes_old_rows_only(store):
    m = model()
    log(store, m, "old", 3, window=0, t=NOW - 1000)
    log(store, m, "new", 2, window=1, t=NOW)
    store.outcomes.ingest(m, outs("old", [1, 0, 1]), NOW - 1000)
    store.outcomes.ingest(m, outs("new", [1, 1]), NOW)
    deleted = store.purge(m, before=NOW - 500)
    assert deleted["predictions"] == 3 and deleted["outcomes"] == 3
    assert store.outcomes.window_prediction_count(m, 0) == 0 and store.outcomes.window_prediction_count(m, 1) == 2
    assert store.outcomes.counts(m)["matched"] == 2


def test_a_late_join_marks_the_window_for_rescoring(store):
    m = model()
    store.outcomes.ingest(m, outs("late", [1]), NOW)           # before its prediction
    assert store.outcomes.windows_to_score(m) == []
    log(store, m, "late", 1, window=3)                         # joined as its prediction is logged
    ((wid, joined_at, n),) = store.outcomes.windows_to_score(m)
    assert wid == 3 and n == 1 and joined_at >= NOW  # joined now, not when it was received


@pytest.mark.parametrize("item, needle", [
    ({"instance_id": 10**400, "outcome": "spam"}, "64-bit integer"),
    ({"request_id": "a", "index": 10**12, "outcome": "spam"}, "'index'"),
    ({"request_id": "r" * 65, "index": 0, "outcome": "spam"}, "at most 64"),
])
def test_ids_the_store_cannot_hold_are_422_not_a_database_error(item, needle):
    with pytest.raises(FeedbackInvalid, match=needle):
        parse_outcomes([item], CLF, 10, NOW)
