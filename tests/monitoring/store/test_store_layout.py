"""A failing database reaches callers as ``StoreUnavailable`` from every public method of
the store (its shape, and that nothing above it imports SQLAlchemy, are checked in
``tests/test_architecture.py``)."""

from __future__ import annotations

import inspect
import sqlite3

import pytest
from sqlalchemy.exc import OperationalError, SQLAlchemyError

import monitoring.store as store_pkg
from monitoring.alerts import AlertState
from monitoring.intake.outcomes import OutcomeIn
from monitoring.store import (AlertStore, AlertTransaction, OutcomeStore, Partial, ReferenceStore, Store,
                              StoreUnavailable, WindowStore)

def test_store_unavailable_is_catchable_without_sqlalchemy():
    assert not any(c.__module__.startswith("sqlalchemy") for c in StoreUnavailable.__mro__)
    assert store_pkg.StoreUnavailable is StoreUnavailable
    err = OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
    exc = StoreUnavailable.from_error(err)
    assert exc.reason == "OperationalError: database is locked" and str(exc) == exc.reason
    assert exc.__cause__ is err


SUBSTORES = [WindowStore, OutcomeStore, AlertStore, ReferenceStore, AlertTransaction, Store]


@pytest.mark.parametrize("cls", SUBSTORES, ids=lambda c: c.__name__)
def test_every_public_method_is_translated_at_the_edge(cls):
    unguarded = [n for n, f in vars(cls).items()
                 if not n.startswith("_") and inspect.isfunction(f) and not getattr(f, "__store_guarded__", False)]
    assert unguarded == []


# -- a failing database ------------------------------------------------------------------------

def public(obj) -> set[str]:
    return {n for n, f in vars(type(obj)).items() if not n.startswith("_") and inspect.isfunction(f)}


PRED = {"model": "m", "request_id": "r", "row_index": 0, "seq": 0, "window_id": 0, "predicted_at": 1.0,
        "client_request_id": None, "instance_id": None, "class_code": 1, "value": None, "proba": None,
        "trace_id": None, "features": None}
OUT = OutcomeIn("r:r:0", 1, None, 1.0, request_id="r", row_index=0)

CALLS = {
    "windows": {
        "reserve_rows": ("rows:m", 1), "counter": ("rows:m",), "seal": ("m", "rows:m", 0, 10, 1.0),
        "upsert_partials": ("m", "w", [(0, Partial("w", 1, 1.0, 1.0, {}, {}))], 1.0),
        "closable": ("m", 10, 0.0, 0), "open_window_started": ("m", 0), "claim": ("m", 0, "w", 1.0),
        "partials": ("m", 0), "finish": ("m", 0, "w", {}, 1, 1, None, None, 1.0), "recent": ("m",), "digests": ("m",),
        "sketch": ("m", 0), "purge": ("m", 0),
    },
    "outcomes": {
        "log_predictions": ([PRED],), "ingest": ("m", [OUT], 1.0), "ingest_group": ("m", [[OUT]], 1.0),
        "match_pending": ("m", 0.0), "counts": ("m",), "windows_to_score": ("m",), "window_predictions": ("m", 0), "window_features": ("m", 0),
        "window_prediction_count": ("m", 0), "save_performance": ("m", 0, {}, True, 0, 1.0),
        "performance_state": ("m",), "performance_windows": ("m",), "oldest_logged_window": ("m",),
        "purge": ("m", 1.0), "request_id_key": ("m",),
    },
    "alerts": {
        "transaction": ("m", lambda tx: tx.lock()), "all": ("m",), "events": ("m",),
        "acknowledge": ("m", "r", None, None, 1.0), "add_silence": ("m", "r", None, 2.0, None, None, 1.0),
        "end_silence": ("m", 1, 1.0), "active_silences": ("m", 1.0), "claim_outbox": ("m", "w", 1.0, 10.0),
        "outbox_done": (1, "w", 1.0), "outbox_retry": (1, 2.0, "e", False), "outbox_counts": ("m",),
        "outbox_rows": ("m",), "purge": ("m", 1.0),
    },
    "references": {"adopt": ("m", 0, {}, None, 1.0), "version": ("m",), "get": ("m", 1)},
}
TX_CALLS = {
    "lock": (), "silences": (1.0,), "save": ("r", "", AlertState(), "warning", 1.0),
    "add_event": ("r", "", 1, "firing", 1.0, 0, True, {}), "enqueue": ("k", ["log"], {}, 1.0),
    "window_traces": (0, 5), "wrong_prediction_traces": (0, 5), "extreme_feature_traces": (0, "x", (0.0, 1.0), 5),
}
TX_KWARGS = {"save": {"exists": False}}


@pytest.fixture
def gone(tmp_path):
    """A store whose database has gone away: its directory moved after the store started."""
    d = tmp_path / "data"
    s = Store(f"sqlite:///{d / 'v.db'}")
    s.windows.reserve_rows("rows:m", 1)  # it worked once
    s.dispose()
    d.rename(tmp_path / "moved")
    yield s
    s.dispose()


@pytest.mark.parametrize("group", sorted(CALLS))
def test_an_unreachable_database_surfaces_as_store_unavailable(gone, group):
    sub = getattr(gone, group)
    assert set(CALLS[group]) == public(sub), "every public method has a call in CALLS"
    for name, args in CALLS[group].items():
        with pytest.raises(StoreUnavailable) as info:
            getattr(sub, name)(*args)
        assert info.value.reason.startswith("OperationalError: unable to open database file"), name
        assert isinstance(info.value.__cause__, SQLAlchemyError)


def test_the_facade_surfaces_store_unavailable_too(gone):
    with pytest.raises(StoreUnavailable):
        gone.purge("m", 1.0)


def test_a_store_that_cannot_start_raises_store_unavailable():
    pytest.importorskip("psycopg")
    with pytest.raises(StoreUnavailable) as info:  # nothing listens on port 1
        Store("postgresql+psycopg://postgres@127.0.0.1:1/vigil", connect_timeout=1)
    assert info.value.reason.startswith("OperationalError: ")


def test_the_alert_transaction_handle_surfaces_store_unavailable(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'v.db'}")
    db = sqlite3.connect(tmp_path / "v.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'vigil_%'").fetchall():
        db.execute(f"DROP TABLE {name}")  # the database answers, but every query fails
    db.commit()
    db.close()

    def every_call(tx):
        assert set(TX_CALLS) == public(tx), "every public method has a call in TX_CALLS"
        failed = {}
        for name, args in TX_CALLS.items():
            try:
                getattr(tx, name)(*args, **TX_KWARGS.get(name, {}))
            except StoreUnavailable as exc:
                failed[name] = exc.reason
        return failed

    failed = s.alerts.transaction("m", every_call)
    assert set(failed) == set(TX_CALLS)
    assert all(r.startswith("OperationalError: no such table") for r in failed.values())
    s.dispose()


def test_a_locked_database_surfaces_as_store_unavailable(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'v.db'}", connect_timeout=0.2)
    holder = sqlite3.connect(tmp_path / "v.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable) as info:
            s.windows.reserve_rows("rows:m", 1)
        assert info.value.reason == "OperationalError: database is locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert s.windows.reserve_rows("rows:m", 1) == 0  # and it resumes once the lock is gone
    s.dispose()
