"""The Store facade: adopted references, and retention composed over every sub-store.
On SQLite, and on Postgres when VIGIL_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import uuid





def model() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def test_store_says_where_it_is(store):
    assert store.dialect in ("sqlite", "postgresql") and store.url.startswith(store.dialect)


def test_adopted_references_count_up_from_the_registered_one(store):
    m = model()
    assert store.references.version(m) == 0 and store.references.get(m, 1) is None
    assert store.references.adopt(m, 7, {"rows": 100}, "ops", 1.0) == 1
    assert store.references.adopt(m, 9, {"rows": 200}, None, 2.0) == 2
    assert store.references.version(m) == 2
    assert store.references.get(m, 1) == (7, {"rows": 100})


def predict(store, m, rid, window, t):
    store.outcomes.log_predictions([{
        "model": m, "request_id": rid, "row_index": 0, "seq": window, "window_id": window, "predicted_at": t,
        "client_request_id": None, "instance_id": None, "class_code": 1, "value": None, "proba": None,
        "trace_id": None, "features": None}])


def evaluated(store, m, window):
    assert store.windows.claim(m, window, "w", 1.0)
    assert store.windows.finish(m, window, "w", {"window_id": window}, 1, 1, 1.0, 1.0, 1.0, digest=b"digest %d" % window)
    store.outcomes.save_performance(m, window, {"window_id": window}, True, 0, 1.0)


def test_retention_drops_the_results_of_windows_whose_predictions_are_gone(store):
    m = model()
    for w, t in ((0, 100.0), (1, 100.0), (2, 1000.0)):
        predict(store, m, f"r{w}", w, t)
        evaluated(store, m, w)
    deleted = store.purge(m, before=500.0)
    assert deleted == {"predictions": 2, "outcomes": 0, "performance": 2, "window_results": 2, "alert_history": 0}
    assert [r.window_id for r in store.windows.recent(m)] == [2]
    assert [(d.window_id, d.digest) for d in store.windows.digests(m)] == [(2, b"digest 2")]  # digests go too
    assert list(store.outcomes.performance_state(m)) == [2]


def test_retention_drops_old_results_when_no_prediction_is_left(store):
    """Issue 12 item 9: an idle model (every prediction older than the retention) used to
    keep its window and performance results for ever; they go by age then."""
    m = model()
    predict(store, m, "r0", 0, 100.0)
    evaluated(store, m, 0)
    deleted = store.purge(m, before=500.0)
    assert deleted == {"predictions": 1, "outcomes": 0, "performance": 1, "window_results": 1, "alert_history": 0}
    assert store.windows.recent(m) == [] and store.outcomes.performance_state(m) == {}


def test_every_sqlite_connection_commits_to_disk_before_acknowledging(tmp_path):
    """Durability lives in the pragmas, not in a crash test (a kill -9 keeps the OS page
    cache, so it passes with ``synchronous=OFF`` too): read them back from the writer's and
    the reader's connections."""
    from monitoring.store import Store

    s = Store(f"sqlite:///{tmp_path / 'v.db'}", connect_timeout=3.0)
    try:
        for engine in (s._db.engine, s._db.reader):  # the store exposes no SQL; the test reads its settings
            with engine.connect() as c:
                raw = c.connection.dbapi_connection
                assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at every commit
                assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 3000
    finally:
        s.dispose()
