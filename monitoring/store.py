"""Vigil's state store (SQLAlchemy 2): SQLite in the data directory by default (WAL, several
workers on one machine share the file), Postgres through ``VIGIL_STORE_URL`` for several
replicas.

What lives here for the monitors: a row counter per model (the global row sequence that
numbers windows, so every worker and replica agrees on which rows make window *w*), each
worker's partial window sketch, window seals (a window closed early by time), and the
history of evaluated windows. Every method is one short transaction; none is ever called
on the request path.

Exception tree: SQLAlchemy's ``SQLAlchemyError`` (``OperationalError`` when the database
is unreachable or locked) propagates; callers on the monitor thread catch it at their edge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (BigInteger, Column, Float, Integer, MetaData, String, Table, Text, and_, create_engine,
                        delete, event, func, insert, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

SCHEMA_VERSION = 1

metadata = MetaData()

schema_version = Table("vigil_schema_version", metadata, Column("version", Integer, primary_key=True))

counters = Table(
    "vigil_counters", metadata,
    Column("name", String(300), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

window_partials = Table(
    "vigil_window_partials", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("worker", String(200), primary_key=True),
    Column("rows", BigInteger, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sketch", Text, nullable=False),
    Column("rejected", Text, nullable=False, default="{}"),
)

window_seals = Table(
    "vigil_window_seals", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("rows_expected", BigInteger, nullable=False),
    Column("sealed_at", Float, nullable=False),
)

window_results = Table(
    "vigil_window_results", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("status", String(20), nullable=False),  # evaluating | done
    Column("claimed_by", String(200), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("rows", BigInteger),
    Column("rows_expected", BigInteger),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("evaluated_at", Float),
    Column("report", Text),
)


@dataclass(frozen=True)
class Partial:
    worker: str
    rows: int
    first_at: float
    last_at: float
    sketch: dict[str, Any]
    rejected: dict[str, int]


@dataclass(frozen=True)
class WindowRecord:
    window_id: int
    status: str
    rows: int | None
    rows_expected: int | None
    started_at: float | None
    ended_at: float | None
    evaluated_at: float | None
    report: dict[str, Any] | None


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks


class Store:
    """Create with a SQLAlchemy URL; tables are created if absent."""

    def __init__(self, url: str, connect_timeout: float = 5.0):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": connect_timeout})
            _sqlite_setup(self.engine)
        else:
            args = {"connect_timeout": int(connect_timeout)} if url.startswith("postgresql") else {}
            self.engine = create_engine(url, pool_pre_ping=True, connect_args=args)
        self._create()

    def _create(self) -> None:
        for attempt in range(5):  # workers starting together may race on CREATE TABLE
            try:
                metadata.create_all(self.engine, checkfirst=True)
                with self.engine.begin() as c:
                    if c.execute(select(schema_version.c.version)).first() is None:
                        c.execute(insert(schema_version).values(version=SCHEMA_VERSION))
                break
            except IntegrityError:
                break
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        with self.engine.connect() as c:
            v = c.execute(select(func.max(schema_version.c.version))).scalar()
        if v != SCHEMA_VERSION:
            raise RuntimeError(f"store schema version {v}; this Vigil needs {SCHEMA_VERSION}")

    def dispose(self) -> None:
        self.engine.dispose()

    # -- row counter ---------------------------------------------------------------
    def reserve_rows(self, name: str, n: int) -> int:
        """Reserve ``n`` consecutive sequence numbers; returns the first."""
        with self.engine.begin() as c:
            row = c.execute(update(counters).where(counters.c.name == name)
                            .values(value=counters.c.value + n).returning(counters.c.value)).first()
            if row is None:
                try:
                    with c.begin_nested():
                        c.execute(insert(counters).values(name=name, value=n))
                    return 0
                except IntegrityError:
                    row = c.execute(update(counters).where(counters.c.name == name)
                                    .values(value=counters.c.value + n).returning(counters.c.value)).first()
            return int(row[0]) - n

    def counter(self, name: str) -> int:
        with self.engine.connect() as c:
            v = c.execute(select(counters.c.value).where(counters.c.name == name)).scalar()
        return int(v or 0)

    def seal(self, model: str, name: str, window_id: int, window_rows: int, now: float) -> int | None:
        """Close window ``window_id`` early: move the counter to the next window and record
        how many rows the window got. Returns that count, or None if it was already full."""
        start, nxt = window_id * window_rows, (window_id + 1) * window_rows
        with self.engine.begin() as c:
            q = select(counters.c.value).where(counters.c.name == name)
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update()
            v = c.execute(q).scalar()
            if v is None or not (start < v < nxt):
                return None
            c.execute(update(counters).where(counters.c.name == name).values(value=nxt))
            c.execute(insert(window_seals).values(model=model, window_id=window_id, rows_expected=v - start,
                                                  sealed_at=now))
            return int(v - start)

    # -- partial windows -------------------------------------------------------------
    def upsert_partials(self, model: str, worker: str, partials: Iterable[tuple[int, Partial]], now: float) -> None:
        """Write this worker's partial sketches (whole, replacing the previous version)."""
        with self.engine.begin() as c:
            for window_id, p in partials:
                vals = dict(rows=p.rows, first_at=p.first_at, last_at=p.last_at, updated_at=now,
                            sketch=json.dumps(p.sketch), rejected=json.dumps(p.rejected))
                res = c.execute(update(window_partials).where(and_(
                    window_partials.c.model == model, window_partials.c.window_id == window_id,
                    window_partials.c.worker == worker)).values(**vals))
                if res.rowcount == 0:
                    c.execute(insert(window_partials).values(model=model, window_id=window_id, worker=worker, **vals))

    def closable(self, model: str, window_rows: int, stale_before: float, current_window: int) -> list[tuple[int, int, int]]:
        """Windows without a result that are complete (all their rows flushed), or stale
        (older than the current window and untouched since ``stale_before``: a worker
        died holding rows). Returns (window_id, rows_flushed, rows_expected)."""
        with self.engine.connect() as c:
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
        with self.engine.connect() as c:
            return c.execute(select(func.min(window_partials.c.first_at)).where(and_(
                window_partials.c.model == model, window_partials.c.window_id == window_id))).scalar()

    def claim(self, model: str, window_id: int, worker: str, now: float, stale_after: float = 60.0) -> bool:
        """Become the one evaluator of a window. A claim older than ``stale_after`` whose
        evaluator never finished may be taken over."""
        with self.engine.begin() as c:
            try:
                with c.begin_nested():
                    c.execute(insert(window_results).values(model=model, window_id=window_id, status="evaluating",
                                                            claimed_by=worker, claimed_at=now))
                return True
            except IntegrityError:
                res = c.execute(update(window_results).where(and_(
                    window_results.c.model == model, window_results.c.window_id == window_id,
                    window_results.c.status == "evaluating", window_results.c.claimed_at < now - stale_after))
                    .values(claimed_by=worker, claimed_at=now))
                return res.rowcount == 1

    def partials(self, model: str, window_id: int) -> list[Partial]:
        with self.engine.connect() as c:
            rows = c.execute(select(window_partials).where(and_(
                window_partials.c.model == model, window_partials.c.window_id == window_id))).mappings().all()
        return [Partial(r["worker"], int(r["rows"]), r["first_at"], r["last_at"], json.loads(r["sketch"]),
                        json.loads(r["rejected"])) for r in rows]

    def finish(self, model: str, window_id: int, worker: str, report: dict[str, Any], rows: int, rows_expected: int,
               started_at: float | None, ended_at: float | None, now: float) -> bool:
        """Store the evaluated window and drop its partials. False if another evaluator took over."""
        with self.engine.begin() as c:
            res = c.execute(update(window_results).where(and_(
                window_results.c.model == model, window_results.c.window_id == window_id,
                window_results.c.claimed_by == worker, window_results.c.status == "evaluating")).values(
                status="done", rows=rows, rows_expected=rows_expected, started_at=started_at, ended_at=ended_at,
                evaluated_at=now, report=json.dumps(report, allow_nan=True)))
            if res.rowcount != 1:
                return False
            c.execute(delete(window_partials).where(and_(window_partials.c.model == model,
                                                         window_partials.c.window_id == window_id)))
            return True

    def windows(self, model: str, limit: int = 50) -> list[WindowRecord]:
        """Evaluated windows, newest first."""
        with self.engine.connect() as c:
            rows = c.execute(select(window_results).where(and_(window_results.c.model == model,
                                                               window_results.c.status == "done"))
                             .order_by(window_results.c.window_id.desc()).limit(limit)).mappings().all()
        return [WindowRecord(int(r["window_id"]), r["status"], r["rows"], r["rows_expected"], r["started_at"],
                             r["ended_at"], r["evaluated_at"], json.loads(r["report"]) if r["report"] else None)
                for r in rows]
