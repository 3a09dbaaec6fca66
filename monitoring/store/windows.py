"""Monitoring windows in the store: the row counter, partial sketches, seals, claims and
the history of evaluated windows (tables ``vigil_counters``, ``vigil_window_partials``,
``vigil_window_seals``, ``vigil_window_results``, ``vigil_window_digests``).

The counter is the global row sequence that numbers windows (window *w* holds rows
``[w·R, (w+1)·R)``), so every worker and replica agrees on which rows make a window. Each
worker writes its partial sketch of a window whole; one worker claims a complete (or
stale) window, merges the partials and stores the result with :meth:`WindowStore.finish`.

Transactions: every method is one short transaction (writers on the writer engine, reads
on the reader); none is ever called on the request path. Row races between workers
(two first reservations, two claims) are settled here with ``IntegrityError`` inside a
savepoint. Failure mode: any other database error surfaces as
:class:`~monitoring.store.errors.StoreUnavailable`, with nothing of the call committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from monitoring.store.errors import guarded
from monitoring.store.tables import counters, window_digests, window_partials, window_results, window_seals

#: Evaluated windows keep their merged sketch (for re-baselining) this many windows back.
KEEP_SKETCHES = 200


@dataclass(frozen=True)
class Partial:
    """One worker's share of a window: its rows, their time span, its sketch and rejections."""

    worker: str
    rows: int
    first_at: float
    last_at: float
    sketch: dict[str, Any]
    rejected: dict[str, int]


@dataclass(frozen=True)
class WindowRecord:
    """An evaluated window (``report`` is what the evaluator produced)."""

    window_id: int
    status: str
    rows: int | None
    rows_expected: int | None
    started_at: float | None
    ended_at: float | None
    evaluated_at: float | None
    report: dict[str, Any] | None


@dataclass(frozen=True)
class WindowDigest:
    """An evaluated window as the dashboard's history reads it: its ``digest`` (opaque
    bytes the evaluator stored beside the report) or, for a window stored without one,
    its ``report``."""

    window_id: int
    rows: int | None
    rows_expected: int | None
    started_at: float | None
    ended_at: float | None
    evaluated_at: float | None
    digest: bytes | None
    report: dict[str, Any] | None


@guarded
class WindowStore:
    """``store.windows``: counters, partials, seals, claims and window results."""

    def __init__(self, engine: Engine, reader: Engine):
        self._engine = engine
        self._reader = reader

    # -- row counter ---------------------------------------------------------------
    def reserve_rows(self, name: str, n: int) -> int:
        """Reserve ``n`` consecutive sequence numbers; returns the first."""
        with self._engine.begin() as c:
            row = c.execute(update(counters).where(counters.c.name == name)
                            .values(value=counters.c.value + n).returning(counters.c.value)).first()
            if row is None:
                try:
                    with c.begin_nested():
                        c.execute(insert(counters).values(name=name, value=n))
                    return 0
                except IntegrityError:  # another worker created the counter first: add to it
                    row = c.execute(update(counters).where(counters.c.name == name)
                                    .values(value=counters.c.value + n).returning(counters.c.value)).first()
            return int(row[0]) - n

    def counter(self, name: str) -> int:
        with self._reader.connect() as c:
            v = c.execute(select(counters.c.value).where(counters.c.name == name)).scalar()
        return int(v or 0)

    def seal(self, model: str, name: str, window_id: int, window_rows: int, now: float) -> int | None:
        """Close window ``window_id`` early: move the counter to the next window and record
        how many rows the window got. Returns that count, or None if it was already full."""
        start, nxt = window_id * window_rows, (window_id + 1) * window_rows
        with self._engine.begin() as c:
            q = select(counters.c.value).where(counters.c.name == name)
            if self._engine.dialect.name == "postgresql":
                q = q.with_for_update()
            v = c.execute(q).scalar()
            if v is None and window_id == 0:  # nothing ever counted, yet the window has figures
                try:
                    with c.begin_nested():
                        c.execute(insert(counters).values(name=name, value=nxt))
                except IntegrityError:
                    return None
                c.execute(insert(window_seals).values(model=model, window_id=0, rows_expected=0, sealed_at=now))
                return 0
            # an empty window (requests that all failed, rejections) closes too: its serving
            # figures are what an error-rate alert needs
            if v is None or not (start <= v < nxt):
                return None
            c.execute(update(counters).where(counters.c.name == name).values(value=nxt))
            c.execute(insert(window_seals).values(model=model, window_id=window_id, rows_expected=v - start,
                                                  sealed_at=now))
            return int(v - start)

    # -- partial windows -------------------------------------------------------------
    def upsert_partials(self, model: str, worker: str, partials: Iterable[tuple[int, Partial]], now: float) -> None:
        """Write this worker's partial sketches (whole, replacing the previous version)."""
        with self._engine.begin() as c:
            for window_id, p in partials:
                vals = dict(rows=p.rows, first_at=p.first_at, last_at=p.last_at, updated_at=now,
                            sketch=json.dumps(p.sketch), rejected=json.dumps(p.rejected))
                res = c.execute(update(window_partials).where(and_(
                    window_partials.c.model == model, window_partials.c.window_id == window_id,
                    window_partials.c.worker == worker)).values(**vals))
                if res.rowcount == 0:
                    c.execute(insert(window_partials).values(model=model, window_id=window_id, worker=worker, **vals))

    def closable(self, model: str, window_rows: int, stale_before: float,
                 current_window: int) -> list[tuple[int, int, int]]:
        """Windows without a result that are complete (all their rows flushed), or stale
        (older than the current window and untouched since ``stale_before``: a worker
        died holding rows). Returns (window_id, rows_flushed, rows_expected)."""
        with self._reader.connect() as c:
            agg = (select(window_partials.c.window_id, func.sum(window_partials.c.rows).label("rows"),
                          func.max(window_partials.c.updated_at).label("updated"))
                   .where(window_partials.c.model == model).group_by(window_partials.c.window_id)).subquery()
            q = (select(agg.c.window_id, agg.c.rows, agg.c.updated, window_seals.c.rows_expected)
                 .select_from(agg.outerjoin(window_seals, and_(window_seals.c.model == model,
                                                               window_seals.c.window_id == agg.c.window_id)))
                 .where(~agg.c.window_id.in_(select(window_results.c.window_id)
                                              .where(window_results.c.model == model))))
            out = []
            for wid, rows, updated, expected in c.execute(q):
                expected = int(expected) if expected is not None else window_rows
                if rows >= expected or (wid < current_window and updated < stale_before):
                    out.append((int(wid), int(rows), expected))
            return sorted(out)

    def open_window_started(self, model: str, window_id: int) -> float | None:
        """When the first row of an open window arrived (any worker), None if no partial."""
        with self._reader.connect() as c:
            return c.execute(select(func.min(window_partials.c.first_at)).where(and_(
                window_partials.c.model == model, window_partials.c.window_id == window_id))).scalar()

    def claim(self, model: str, window_id: int, worker: str, now: float, stale_after: float = 60.0) -> bool:
        """Become the one evaluator of a window. A claim older than ``stale_after`` whose
        evaluator never finished may be taken over."""
        with self._engine.begin() as c:
            try:
                with c.begin_nested():
                    c.execute(insert(window_results).values(model=model, window_id=window_id, status="evaluating",
                                                            claimed_by=worker, claimed_at=now))
                return True
            except IntegrityError:  # claimed already: take it over only if its evaluator went quiet
                res = c.execute(update(window_results).where(and_(
                    window_results.c.model == model, window_results.c.window_id == window_id,
                    window_results.c.status == "evaluating", window_results.c.claimed_at < now - stale_after))
                    .values(claimed_by=worker, claimed_at=now))
                return res.rowcount == 1

    def partials(self, model: str, window_id: int) -> list[Partial]:
        with self._reader.connect() as c:
            rows = c.execute(select(window_partials).where(and_(
                window_partials.c.model == model, window_partials.c.window_id == window_id))).mappings().all()
        return [Partial(r["worker"], int(r["rows"]), r["first_at"], r["last_at"], json.loads(r["sketch"]),
                        json.loads(r["rejected"])) for r in rows]

    # -- results -------------------------------------------------------------------
    def finish(self, model: str, window_id: int, worker: str, report: dict[str, Any], rows: int, rows_expected: int,
               started_at: float | None, ended_at: float | None, now: float,
               sketch: dict[str, Any] | None = None, digest: bytes | None = None) -> bool:
        """Store the evaluated window (with ``digest``, its condensed form for the
        dashboard, see :meth:`digests`) and drop its partials. False if another evaluator
        took over."""
        with self._engine.begin() as c:
            res = c.execute(update(window_results).where(and_(
                window_results.c.model == model, window_results.c.window_id == window_id,
                window_results.c.claimed_by == worker, window_results.c.status == "evaluating")).values(
                status="done", rows=rows, rows_expected=rows_expected, started_at=started_at, ended_at=ended_at,
                evaluated_at=now, report=json.dumps(report, allow_nan=True),
                sketch=None if sketch is None else json.dumps(sketch)))
            if res.rowcount != 1:
                return False
            if digest is not None:  # finished once (its claim is done now); the delete clears a purged id's leftover
                c.execute(delete(window_digests).where(and_(window_digests.c.model == model,
                                                            window_digests.c.window_id == window_id)))
                c.execute(insert(window_digests).values(model=model, window_id=window_id, digest=digest))
            c.execute(delete(window_partials).where(and_(window_partials.c.model == model,
                                                         window_partials.c.window_id == window_id)))
            # only recent windows keep their sketch (what re-baselining can adopt): ~20 KB each
            c.execute(update(window_results).where(and_(
                window_results.c.model == model, window_results.c.window_id < window_id - KEEP_SKETCHES,
                window_results.c.sketch.is_not(None))).values(sketch=None))
            return True

    def recent(self, model: str, limit: int = 50) -> list[WindowRecord]:
        """Evaluated windows, newest first."""
        with self._reader.connect() as c:
            rows = c.execute(select(window_results).where(and_(window_results.c.model == model,
                                                               window_results.c.status == "done"))
                             .order_by(window_results.c.window_id.desc()).limit(limit)).mappings().all()
        return [WindowRecord(int(r["window_id"]), r["status"], r["rows"], r["rows_expected"], r["started_at"],
                             r["ended_at"], r["evaluated_at"], json.loads(r["report"]) if r["report"] else None)
                for r in rows]

    def digests(self, model: str, limit: int = 50) -> list[WindowDigest]:
        """Evaluated windows, newest first, as :class:`WindowDigest`: the report is read
        (and parsed) only for windows stored without a digest."""
        w, d = window_results.c, window_digests.c
        with self._reader.connect() as c:
            rows = c.execute(select(w.window_id, w.rows, w.rows_expected, w.started_at, w.ended_at, w.evaluated_at,
                                    d.digest)
                             .select_from(window_results.outerjoin(window_digests, and_(
                                 d.model == w.model, d.window_id == w.window_id)))
                             .where(and_(w.model == model, w.status == "done"))
                             .order_by(w.window_id.desc()).limit(limit)).all()
            bare = [int(r[0]) for r in rows if r[6] is None]
            reports = {r[0]: r[1] for r in c.execute(select(w.window_id, w.report).where(and_(
                w.model == model, w.window_id.in_(bare))))} if bare else {}
        return [WindowDigest(int(r[0]), r[1], r[2], r[3], r[4], r[5], None if r[6] is None else bytes(r[6]),
                             json.loads(reports[r[0]]) if reports.get(r[0]) else None) for r in rows]

    def sketch(self, model: str, window_id: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(merged profile, report) of an evaluated window; (None, None) if unknown."""
        with self._reader.connect() as c:
            r = c.execute(select(window_results.c.sketch, window_results.c.report).where(and_(
                window_results.c.model == model, window_results.c.window_id == window_id,
                window_results.c.status == "done"))).first()
        if r is None:
            return None, None
        return (json.loads(r[0]) if r[0] else None), (json.loads(r[1]) if r[1] else None)

    def purge(self, model: str, before_window: int | None, evaluated_before: float | None = None) -> dict[str, int]:
        """Retention: delete the evaluated results of windows older than ``before_window``
        (the oldest window that still has logged predictions: the facade asks the outcome
        store; None when none is left) or evaluated before ``evaluated_before`` (epoch
        seconds: every row of such a window is older). Counters, seals and partials are
        tiny and kept."""
        w = window_results.c
        old = [w.window_id < before_window] if before_window is not None else []
        if evaluated_before is not None:
            old.append(w.evaluated_at < evaluated_before)
        if not old:
            return {"window_results": 0}
        with self._engine.begin() as c:
            n = c.execute(delete(window_results).where(and_(w.model == model, w.status == "done",
                                                            or_(*old)))).rowcount
            # a window's digest goes with its result (those left have a result row still)
            c.execute(delete(window_digests).where(and_(
                window_digests.c.model == model, ~window_digests.c.window_id.in_(
                    select(w.window_id).where(w.model == model)))))
        return {"window_results": n}
