"""Engines, SQLite settings, schema creation and migration: how the store reaches its
database. Owns no table's content.

SQLite (the embedded default, one file shared by the workers of one machine) gets two
engines: a writer whose transactions begin with ``BEGIN IMMEDIATE`` (a writer takes the
write lock up front, so two writers never deadlock upgrading a read lock) and a reader
whose transactions never lock (WAL lets readers run beside the writer). Every connection
sets WAL, ``synchronous=FULL`` (a commit is on disk before it is acknowledged) and a busy
timeout of ``connect_timeout``. Postgres and other URLs get one pooled engine with
``pool_pre_ping`` (a connection the server dropped is replaced, not handed out) and, on
Postgres, a connect timeout.

:meth:`Database.create` creates missing tables and migrates an older schema in place; it
is safe for several workers starting at once (they race on ``CREATE TABLE``; the losers
retry). Failure mode: :class:`~monitoring.store.errors.StoreUnavailable` when the database
cannot be reached; ``RuntimeError`` when it holds a schema newer than this code knows.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import and_, create_engine, event, func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from monitoring.store.errors import guarded
from monitoring.store.tables import (OUTCOMES_ONE_PER_PREDICTION, OUTCOMES_WAITING, SCHEMA_VERSION, metadata,
                                     outcomes, schema_version)


def _sqlite_setup(engine: Engine, timeout: float, immediate: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before we acknowledge it
        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # writers take the write lock up front (no upgrade deadlocks); readers never lock
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@guarded
class Database:
    """The engines for one SQLAlchemy URL. Building one opens no connection; call
    :meth:`create` before use. ``engine`` writes; ``reader`` reads (the same engine except
    on SQLite)."""

    def __init__(self, url: str, connect_timeout: float = 5.0):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": connect_timeout})
            _sqlite_setup(self.engine, connect_timeout)
            self.reader = create_engine(url, connect_args={"timeout": connect_timeout})
            _sqlite_setup(self.reader, connect_timeout, immediate=False)
        else:
            args = {"connect_timeout": int(connect_timeout)} if url.startswith("postgresql") else {}
            self.engine = create_engine(url, pool_pre_ping=True, connect_args=args)
            self.reader = self.engine

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ..."""
        return self.engine.dialect.name

    def create(self) -> None:
        """Create missing tables, record or check the schema version, migrate an older one."""
        for attempt in range(5):  # workers starting together may race on CREATE TABLE
            try:
                metadata.create_all(self.engine, checkfirst=True)
                with self.engine.begin() as c:
                    if c.execute(select(schema_version.c.version)).first() is None:
                        c.execute(insert(schema_version).values(version=SCHEMA_VERSION))
                break
            except IntegrityError:  # another worker recorded the version first
                break
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        with self.engine.connect() as c:
            v = c.execute(select(func.max(schema_version.c.version))).scalar()
        if v is not None and v < SCHEMA_VERSION:
            v = self._migrate(v)
        if v != SCHEMA_VERSION:
            raise RuntimeError(f"store schema version {v}; this Vigil needs {SCHEMA_VERSION}")

    def _migrate(self, version: int) -> int:
        """Bring an older store up to :data:`SCHEMA_VERSION` (new tables were created by
        ``create_all`` already; columns and indexes added to existing tables are added here),
        one step per version, in one transaction."""
        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":  # workers starting together migrate one at a time
                c.exec_driver_sql("LOCK TABLE vigil_schema_version IN EXCLUSIVE MODE")
            current = c.execute(select(func.max(schema_version.c.version))).scalar()
            if current is not None and current >= SCHEMA_VERSION:
                return int(current)
            if current == 1:  # v2: window_results.sketch (re-baselining), alert tables
                cols = {col["name"] for col in sa_inspect(c).get_columns("vigil_window_results")}
                if "sketch" not in cols:
                    c.exec_driver_sql("ALTER TABLE vigil_window_results ADD COLUMN sketch TEXT")
                current = 2
            if current == 2:  # v3: outcomes.closed, one matched outcome per prediction, waiting by age
                _migrate_outcomes_v3(c)
                current = 3
            if current == 3:  # v4: window_digests (created above; windows stored before have none)
                current = 4
            c.execute(update(schema_version).values(version=current))
            return int(current)

    def dispose(self) -> None:
        """Close every pooled connection (a later call opens new ones)."""
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()


def _migrate_outcomes_v3(c) -> None:
    """Add ``closed``; where v2 matched several outcomes (posted under different keys) to
    one prediction, keep the earliest received and close the others as conflicts (they
    were never all scored: one of them was, arbitrarily); then the unique partial index
    that keeps it so, and the waiting-by-age index that replaces v2's pending index."""
    if "closed" not in {col["name"] for col in sa_inspect(c).get_columns("vigil_outcomes")}:
        c.exec_driver_sql("ALTER TABLE vigil_outcomes ADD COLUMN closed VARCHAR(12)")
    o = outcomes.c
    c.execute(update(outcomes).where(o.expired.is_(True)).values(closed="expired"))
    groups = c.execute(select(o.model, o.request_id, o.row_index).where(o.matched.is_(True))
                       .group_by(o.model, o.request_id, o.row_index).having(func.count() > 1)).all()
    for model, rid, idx in groups:
        keys = [r[0] for r in c.execute(select(o.okey).where(and_(
            o.model == model, o.request_id == rid, o.row_index == idx, o.matched.is_(True)))
            .order_by(o.received_at, o.okey))]
        c.execute(update(outcomes).where(and_(o.model == model, o.okey.in_(keys[1:]))).values(
            matched=False, expired=True, closed="conflict"))
    OUTCOMES_ONE_PER_PREDICTION.create(c, checkfirst=True)
    OUTCOMES_WAITING.create(c, checkfirst=True)
    c.exec_driver_sql("DROP INDEX IF EXISTS ix_vigil_outcomes_pending")
