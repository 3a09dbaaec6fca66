"""Outcomes meet their predictions by every key, once, from both sides, without scanning
what waits (issue 12 items 2, 3, 5 and 7; issue 18 item 7), on SQLite and Postgres."""

from __future__ import annotations

import sqlite3
import time
import uuid

import numpy as np
import pytest
from sqlalchemy import create_engine, select, update

from monitoring.intake.outcomes import RequestIds, parse_outcomes
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.store import SCHEMA_VERSION, OutcomeConflict, Store
from monitoring.store.tables import outcomes

CLF = ModelSchema((FeatureSpec("x", "numeric", "float"),), task="classification", classes=(0, 1))
NOW = time.time()
IDS = RequestIds(b"test-key")


def model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


_SEQ = iter(range(10**9))


def log(store, m, rid, n, t=NOW, client=None, instances=None, window=0):
    store.outcomes.log_predictions([{
        "model": m, "request_id": rid, "row_index": i, "seq": next(_SEQ), "window_id": window, "predicted_at": t,
        "client_request_id": client, "instance_id": None if instances is None else instances[i],
        "class_code": 0, "value": None, "proba": np.array([0.5, 0.5], np.float32).tobytes(), "trace_id": None,
        "features": None} for i in range(n)])


def post(store, m, items, now=NOW, early=False):
    return store.outcomes.ingest(m, parse_outcomes(items, CLF, 10_000, now, request_ids=IDS, allow_early=early), now)


def counts(store, m):
    return store.outcomes.counts(m)


def test_every_key_of_one_prediction_is_the_same_prediction(store):
    """Item 5: by request_id (1), by client_request_id (1), by instance_id (0): one label, a
    duplicate, and a 409 (it was three rows, one of them scored arbitrarily)."""
    m, rid = model(), IDS.issue(1)
    log(store, m, rid, 1, client="order-1", instances=["txn-1"])
    assert post(store, m, [{"request_id": rid, "index": 0, "outcome": 1}]).accepted == 1
    res = post(store, m, [{"client_request_id": "order-1", "index": 0, "outcome": 1}])
    assert (res.accepted, res.duplicate) == (0, 1)
    with pytest.raises(OutcomeConflict) as e:
        post(store, m, [{"instance_id": "txn-1", "outcome": 0}])
    assert "already stored for this prediction" in e.value.conflicts[0][1]
    assert counts(store, m)["matched"] == 1


def test_contradicting_keys_in_one_batch_are_a_conflict_and_nothing_is_stored(store):
    m, rid = model(), IDS.issue(1)
    log(store, m, rid, 1, client="order-1", instances=["txn-1"])
    with pytest.raises(OutcomeConflict) as e:
        post(store, m, [{"request_id": rid, "index": 0, "outcome": 1},
                        {"client_request_id": "order-1", "index": 0, "outcome": 1},
                        {"instance_id": "txn-1", "outcome": 0}])
    assert [pos for pos, _ in e.value.conflicts] == [2]
    assert counts(store, m)["matched"] == 0


def test_a_caller_id_names_its_first_prediction(store):
    """Item 2 (the store's half): a later prediction reusing a caller id does not take its labels."""
    m, victim, other = model(), IDS.issue(2), IDS.issue(2)
    log(store, m, victim, 2, t=NOW - 10, client="order-777", instances=["a-1", "a-2"])
    log(store, m, other, 2, t=NOW - 5, client="order-777", instances=["a-1", "b-2"])
    post(store, m, [{"client_request_id": "order-777", "index": 1, "outcome": 1}, {"instance_id": "a-1", "outcome": 1}])
    engine = create_engine(store.url)
    with engine.connect() as c:
        joined = set(c.execute(select(outcomes.c.request_id).where(outcomes.c.model == m)).scalars())
    engine.dispose()
    assert joined == {victim}


def test_an_early_outcome_is_joined_when_its_prediction_is_logged_whatever_waits(store):
    """Item 3: hundreds of outcomes for ids that never appear do not delay a real one: the
    join is looked up from the logged prediction's keys, not found by scanning what waits."""
    m = model()
    junk = [{"client_request_id": f"never-{i}", "index": 0, "outcome": 1} for i in range(600)]
    assert post(store, m, junk, now=NOW - 60, early=True).pending == 600
    assert post(store, m, [{"client_request_id": "order-9", "index": 0, "outcome": 1}], early=True).pending == 1
    log(store, m, IDS.issue(1), 1, t=NOW + 1, client="order-9")
    assert counts(store, m) == {"matched": 1, "pending": 600, "expired": 0, "conflicting": 0}
    # the sweep that backs it up costs a bounded amount per call, and expiry is one statement
    assert store.outcomes.match_pending(m, expire_before=NOW - 30, limit=50) == (0, 600)


def test_a_label_locked_in_ahead_of_time_is_replaced_by_a_later_one(store):
    """Item 7: an outcome posted for a caller id before its prediction existed is provisional."""
    m = model()
    post(store, m, [{"client_request_id": "order-2", "index": 0, "outcome": 1}], now=NOW - 100, early=True)
    log(store, m, IDS.issue(1), 1, t=NOW - 50, client="order-2")  # matched to the early (wrong) label
    res = post(store, m, [{"client_request_id": "order-2", "index": 0, "outcome": 0}], now=NOW)
    assert (res.accepted, res.replaced) == (1, 1)
    assert counts(store, m)["matched"] == 1
    with pytest.raises(OutcomeConflict):  # a label posted after the prediction is not provisional
        post(store, m, [{"client_request_id": "order-2", "index": 0, "outcome": 1}], now=NOW + 1)


def test_unknown_keys_are_reported_and_not_kept(store):
    """Issue 18 item 7: typos are reported; an issued id not logged yet is kept as pending."""
    m, logged, lagging = model(), IDS.issue(2), IDS.issue(3)
    log(store, m, logged, 2, client="order-5")
    res = post(store, m, [
        {"request_id": logged, "index": 0, "outcome": 1},      # fine
        {"request_id": logged, "index": 2, "outcome": 1},      # beyond the logged request's rows
        {"request_id": "f" * 32, "index": 0, "outcome": 1},    # never issued
        {"request_id": lagging, "index": 2, "outcome": 1},     # issued, its log row not written yet
        {"request_id": lagging, "index": 3, "outcome": 1},     # beyond the rows the id records
        {"client_request_id": "order-5", "index": 9, "outcome": 1},
        {"client_request_id": "order-6", "index": 0, "outcome": 1},
    ])
    assert (res.accepted, res.pending) == (2, 1)
    reasons = dict(res.unknown)
    assert sorted(reasons) == [1, 2, 4, 5, 6]
    assert "beyond the 2 row(s)" in reasons[1] and "never issued" in reasons[2]
    assert "beyond the 3 row(s)" in reasons[4] and "allow_early" in reasons[6]
    assert counts(store, m)["pending"] == 1
    log(store, m, lagging, 3)
    assert counts(store, m)["matched"] == 2


def test_waiting_outcomes_that_disagree_leave_one_label_and_a_counted_conflict(store):
    m = model()
    post(store, m, [{"client_request_id": "c-1", "index": 0, "outcome": 1}], now=NOW - 20, early=True)
    post(store, m, [{"instance_id": "i-1", "outcome": 0}], now=NOW - 10, early=True)
    post(store, m, [{"instance_id": "i-2", "outcome": 1}], now=NOW - 10, early=True)
    log(store, m, IDS.issue(2), 2, client="c-1", instances=["i-1", "i-2"])
    assert counts(store, m) == {"matched": 2, "pending": 0, "expired": 0, "conflicting": 1}


def test_the_sweep_joins_what_a_logged_prediction_missed(store):
    """A waiting outcome stored beside its prediction without meeting it (a store written by
    an older Vigil) is joined by the bounded sweep."""
    m, rid = model(), IDS.issue(1)
    post(store, m, [{"request_id": rid, "index": 0, "outcome": 1}])
    log(store, m, rid, 1)
    engine = create_engine(store.url)
    with engine.begin() as c:  # undo the join, as if it never happened
        c.execute(update(outcomes).where(outcomes.c.model == m).values(matched=False, window_id=None, seq=None))
    engine.dispose()
    assert counts(store, m)["pending"] == 1
    assert store.outcomes.match_pending(m, expire_before=0, limit=10) == (1, 0)


def test_a_v2_store_keeps_one_label_per_prediction(tmp_path):
    path = tmp_path / "v.db"
    Store(f"sqlite:///{path}").dispose()
    db = sqlite3.connect(path)
    db.executescript("""
        DROP INDEX ux_vigil_outcomes_matched; DROP INDEX ix_vigil_outcomes_waiting;
        ALTER TABLE vigil_outcomes DROP COLUMN closed;
        UPDATE vigil_schema_version SET version = 2;
        INSERT INTO vigil_outcomes (model, okey, class_code, observed_at, received_at, request_id, row_index,
            window_id, seq, matched, expired) VALUES
            ('m', 'r:a:0', 1, 1, 1, 'a', 0, 0, 0, 1, 0), ('m', 'c:x:0', 0, 2, 2, 'a', 0, 0, 0, 1, 0),
            ('m', 'i:t', 1, 3, 3, 'a', 0, 0, 0, 1, 0), ('m', 'r:b:0', 1, 1, 1, NULL, NULL, NULL, NULL, 0, 1);
    """)
    db.commit()
    db.close()
    s = Store(f"sqlite:///{path}")
    assert SCHEMA_VERSION == 4
    assert s.outcomes.counts("m") == {"matched": 1, "pending": 0, "expired": 1, "conflicting": 2}
    s.dispose()


def test_an_outcome_and_its_prediction_committed_at_once_still_meet(store):
    """Two writers at the same moment (a replica logging a prediction, another storing its
    outcome): the logging transaction is held open after it looked for waiting outcomes,
    while the outcome is stored. Each side looks for the other after taking the model's
    lock, so the outcome is joined, not left waiting."""
    import threading

    m, rid = model(), IDS.issue(1)
    other = Store(store.url)  # another process's connections
    looked = threading.Event()
    joins = other.outcomes._joins
    original = joins.join_logged

    def slow_join_logged(c, model_, rows):
        original(c, model_, rows)
        looked.set()
        time.sleep(1.0)  # commit late: the outcome arrives in between

    joins.join_logged = slow_join_logged
    t = threading.Thread(target=log, args=(other, m, rid, 1))
    t.start()
    assert looked.wait(10)
    res = post(store, m, [{"request_id": rid, "index": 0, "outcome": 1}])
    t.join()
    other.dispose()
    assert res.accepted == 1
    assert counts(store, m) == {"matched": 1, "pending": 0, "expired": 0, "conflicting": 0}


def test_joins_never_walk_what_waits_or_what_matched(tmp_path):
    """Every query an ingest, a log flush and a join run is an index search on SQLite: none
    scans a table, and the waiting index serves only the one-row 'does anything wait' probe
    (a state condition once made SQLite walk every matched outcome through it)."""
    from sqlalchemy import event

    s = Store(f"sqlite:///{tmp_path / 'v.db'}")
    m, rid = model(), IDS.issue(2)
    post(s, m, [{"client_request_id": f"junk-{i}", "index": 0, "outcome": 1} for i in range(50)], early=True)
    seen: list[tuple[str, tuple]] = []
    engine = s._db.engine  # the test watches the statements; the store exposes no SQL

    def watch(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", watch)
    post(s, m, [{"client_request_id": "c-1", "index": 0, "outcome": 1}], early=True)
    log(s, m, rid, 2, client="c-1", instances=["i-1", "i-2"])
    post(s, m, [{"request_id": rid, "index": 1, "outcome": 0}, {"instance_id": "i-1", "outcome": 1}])
    event.remove(engine, "before_cursor_execute", watch)
    db = sqlite3.connect(tmp_path / "v.db")
    checked = 0
    for statement, params in seen:
        if "vigil_outcomes" not in statement and "vigil_predictions" not in statement:
            continue
        plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + statement, params))
        assert "SCAN" not in plan, (statement, plan)
        assert "ix_vigil_outcomes_waiting" not in plan or "LIMIT" in statement.upper(), (statement, plan)
        checked += 1
    db.close()
    assert checked >= 6
    assert counts(s, m) == {"matched": 2, "pending": 50, "expired": 0, "conflicting": 0}
    s.dispose()
