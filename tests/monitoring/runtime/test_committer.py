"""Group commit of feedback (monitoring/runtime/committer.py) against a real store whose
COMMIT is held or made to fail: the durability promise is that a caller is answered only
once its outcomes are committed, and that when a commit fails every caller of that group
gets the failure (and nothing of theirs is stored). On SQLite, and on Postgres when
VIGIL_TEST_POSTGRES_URL is set.

The COMMIT is reached through SQLAlchemy's ``commit`` connection event, which runs on the
committer's thread just before the driver's COMMIT: holding it there holds the commit,
raising there fails it."""

from __future__ import annotations

import threading
import time
import uuid
from typing import ClassVar

import pytest
from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import OperationalError

from monitoring.runtime import committer as committer_module
from monitoring.runtime.committer import GroupCommitter
from monitoring.store import StoreUnavailable
from monitoring.store.tables import outcomes
from tests.monitoring.intake.test_feedback import outs

WAITERS = 5
DEADLINE = 10.0


def wait_for(condition, what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def stored_request_ids(url: str, model: str) -> set[str]:
    """What another connection sees committed (a fresh engine: nothing shared with the store)."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return {r[0] for r in c.execute(select(outcomes.c.request_id).where(outcomes.c.model == model))}
    finally:
        engine.dispose()


class AckWatch(committer_module.Future):
    """The committer's Future, recording at the moment a waiter is answered which request
    ids another connection sees committed. The future is created on the waiter's thread,
    whose name is the waiter's request id."""

    acks: ClassVar[list[tuple[str, bool, set[str]]]] = []
    url = model = ""

    def __init__(self):
        super().__init__()
        self.rid = threading.current_thread().name

    def _record(self, ok: bool) -> None:
        AckWatch.acks.append((self.rid, ok, stored_request_ids(AckWatch.url, AckWatch.model)))

    def set_result(self, result):
        self._record(True)
        super().set_result(result)

    def set_exception(self, exception):
        self._record(False)
        super().set_exception(exception)


def submit_all(gc, rids, results, timeout=DEADLINE):
    def post(rid):
        try:
            results[rid] = gc.submit(outs(rid, [0, 1]), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 (the test inspects what each waiter got)
            results[rid] = exc

    threads = [threading.Thread(target=post, args=(rid,), name=rid) for rid in rids]
    for t in threads:
        t.start()
    return threads


def first_commit_waits_for_a_full_queue(engine, gc, n_queued, fail: bool):
    """A ``commit`` listener: the first COMMIT is held until ``n_queued`` requests wait behind
    it (so the next group holds several waiters); with ``fail`` every COMMIT raises the
    error a full disk gives."""
    entered = threading.Event()

    def on_commit(conn):
        if not entered.is_set():
            entered.set()
            wait_for(lambda: gc._q.qsize() >= n_queued, f"{n_queued} queued requests")
        if fail:
            raise OperationalError("COMMIT", {}, Exception("database or disk is full"))

    event.listen(engine, "commit", on_commit)
    return entered, on_commit


@pytest.fixture
def watched(store, monkeypatch):
    m = f"gc-{uuid.uuid4().hex[:10]}"
    AckWatch.acks, AckWatch.url, AckWatch.model = [], store.url, m
    monkeypatch.setattr(committer_module, "Future", AckWatch)
    return store, m


def held_first_commit(store, m, fail: bool) -> tuple[GroupCommitter, dict]:
    """Submit one request, hold its COMMIT until WAITERS - 1 more have queued behind it (then
    let it pass, or ``fail`` it); the committer, and every request's answer by request id."""
    gc = GroupCommitter(store, m)
    engine = store._db.engine  # the store exposes no SQL; the test holds its COMMIT
    entered, listener = first_commit_waits_for_a_full_queue(engine, gc, WAITERS - 1, fail=fail)
    results: dict = {}
    try:
        threads = submit_all(gc, ["first"], results)
        wait_for(entered.is_set, "the first COMMIT")
        threads += submit_all(gc, [f"r{i}" for i in range(WAITERS - 1)], results)
        for t in threads:
            t.join(DEADLINE)
    finally:
        event.remove(engine, "commit", listener)
    return gc, results


def test_no_waiter_is_answered_before_the_commit_of_its_outcomes_returns(watched):
    store, m = watched
    _, results = held_first_commit(store, m, fail=False)
    assert all(getattr(r, "accepted", None) == 2 for r in results.values()), results
    assert len(AckWatch.acks) == WAITERS
    early = [rid for rid, _, seen in AckWatch.acks if rid not in seen]
    assert early == [], f"answered before their outcomes were committed: {early}"
    assert stored_request_ids(store.url, m) == set(results)


def test_a_failed_commit_reaches_every_waiter_of_its_group_and_stores_nothing(watched):
    store, m = watched
    gc, results = held_first_commit(store, m, fail=True)
    # two groups (the first request alone, then the WAITERS - 1 that queued behind it): each
    # waiter got the store's failure (a 503), none a result and none a timeout
    assert sorted(results) == sorted(["first"] + [f"r{i}" for i in range(WAITERS - 1)])
    assert all(isinstance(r, StoreUnavailable) for r in results.values()), results
    assert gc.errors == 2 and "disk is full" in gc.last_error
    assert [ok for _, ok, _ in AckWatch.acks] == [False] * WAITERS
    assert stored_request_ids(store.url, m) == set()
    # the committer keeps working once the store does
    assert gc.submit(outs("after", [1]), timeout=DEADLINE).accepted == 1 and gc.last_error is None
