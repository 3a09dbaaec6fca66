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

from sqlalchemy import and_, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

#: Evaluated windows keep their merged sketch (for re-baselining) this many windows back.
KEEP_SKETCHES = 200

from monitoring.intake.outcomes import OutcomeIn  # noqa: E402
from monitoring.store.errors import OutcomeConflict  # noqa: E402,F401
from monitoring.store.tables import (SCHEMA_VERSION, counters, metadata, outcomes, performance,  # noqa: E402
                                     predictions, schema_version, window_partials, window_results, window_seals)
from monitoring.store.alerts import _AlertStore  # noqa: E402


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


# -- prediction log, outcomes, performance ---------------------------------------------------

@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicate: int
    pending: int


_CHUNK = 400


def _chunks(seq, n=_CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _same(a_code, a_val, b_code, b_val) -> bool:
    if a_code is not None or b_code is not None:
        return a_code == b_code
    return a_val == b_val


class _PredictionLog:
    """Mixin: the prediction/outcome/performance methods of :class:`Store`."""

    engine: Engine

    def log_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Insert prediction rows in one transaction; a row already logged (a retried
        flush) is skipped by the database (ON CONFLICT DO NOTHING). Goes through the
        driver's ``executemany``: SQLAlchemy's per-row parameter handling would cost more
        than the insert itself."""
        if not rows:
            return
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # other databases: the portable (slower) path
            with self.engine.begin() as c:
                for part in _chunks(rows, 1000):
                    c.execute(insert(predictions), part)
            return
        stmt = dialect_insert(predictions).on_conflict_do_nothing(
            index_elements=[predictions.c.model, predictions.c.request_id, predictions.c.row_index])
        compiled = stmt.compile(dialect=self.engine.dialect, column_keys=list(rows[0]))
        sql = str(compiled)
        order = compiled.positiontup
        with self.engine.begin() as c:
            cur = c.connection.driver_connection.cursor()
            try:
                for part in _chunks(rows, 5000):
                    if order is not None:
                        cur.executemany(sql, [tuple(r[k] for k in order) for r in part])
                    else:
                        cur.executemany(sql, part)
            except c.dialect.loaded_dbapi.Error as exc:  # the driver's own error: give callers SQLAlchemy's
                raise OperationalError(sql, None, exc) from exc
            finally:
                cur.close()

    def _resolve(self, c, model: str, items: list[OutcomeIn]) -> dict[str, tuple[str, int, int, int]]:
        """Map okey -> (request_id, row_index, window_id, seq) for outcomes whose prediction is logged.

        Looks predictions up by their id column alone (an indexed equality IN list) and
        matches row indexes here: tuple IN lists defeat the index on some databases."""
        out: dict[str, tuple[str, int, int]] = {}
        cols = (predictions.c.request_id, predictions.c.row_index, predictions.c.window_id, predictions.c.seq)
        by_req: dict[str, list[OutcomeIn]] = {}
        by_inst: dict[str, list[OutcomeIn]] = {}
        by_client: dict[str, list[OutcomeIn]] = {}
        for i in items:
            if i.request_id is not None:
                by_req.setdefault(i.request_id, []).append(i)
            elif i.instance_id is not None:
                by_inst.setdefault(i.instance_id, []).append(i)
            elif i.client_request_id is not None:
                by_client.setdefault(i.client_request_id, []).append(i)
        for part in _chunks(list(by_req)):
            found = {(r[0], r[1]): tuple(r) for r in c.execute(select(*cols).where(and_(
                predictions.c.model == model, predictions.c.request_id.in_(part))))}
            for rid in part:
                for i in by_req[rid]:
                    if (rid, i.row_index) in found:
                        out[i.okey] = found[(rid, i.row_index)]
        for part in _chunks(list(by_inst)):
            rows = c.execute(select(predictions.c.instance_id, *cols).where(and_(
                predictions.c.model == model, predictions.c.instance_id.in_(part)))
                .order_by(predictions.c.predicted_at)).all()
            latest = {r[0]: tuple(r[1:]) for r in rows}  # the most recent prediction for the id wins
            for iid in part:
                if iid in latest:
                    for i in by_inst[iid]:
                        out[i.okey] = latest[iid]
        for part in _chunks(list(by_client)):
            rows = c.execute(select(predictions.c.client_request_id, *cols).where(and_(
                predictions.c.model == model, predictions.c.client_request_id.in_(part)))
                .order_by(predictions.c.predicted_at)).all()
            latest = {(r[0], r[2]): tuple(r[1:]) for r in rows}
            for cid in part:
                for i in by_client[cid]:
                    if (cid, i.row_index) in latest:
                        out[i.okey] = latest[(cid, i.row_index)]
        return out

    def ingest_outcomes(self, model: str, items: list[OutcomeIn], now: float) -> IngestResult:
        """Store a batch of outcomes atomically: all or nothing. Re-sent outcomes count as
        duplicates; an outcome that contradicts a stored one (or another in the batch)
        raises :class:`OutcomeConflict` and nothing is written. Committed on return."""
        (res,) = self.ingest_group(model, [items], now)
        if isinstance(res, OutcomeConflict):
            raise res
        return res

    def ingest_group(self, model: str, batches: list[list[OutcomeIn]], now: float) -> list:
        """Several batches in ONE transaction (one commit, one fsync), each batch inside its
        own savepoint so that a conflicting batch is rolled back alone. Returns, per batch,
        an :class:`IngestResult` or the :class:`OutcomeConflict` that rejected it."""
        out: list = []
        with self.engine.begin() as c:
            for items in batches:
                try:
                    with c.begin_nested():
                        out.append(self._ingest(c, model, items, now))
                except OutcomeConflict as exc:
                    out.append(exc)
        return out

    def _ingest(self, c, model: str, items: list[OutcomeIn], now: float) -> IngestResult:
        conflicts: list[tuple[int, str]] = []
        first: dict[str, int] = {}
        for pos, it in enumerate(items):
            if it.okey in first:
                prev = items[first[it.okey]]
                if not _same(prev.class_code, prev.value, it.class_code, it.value):
                    conflicts.append((pos, f"contradicts item {first[it.okey]} of this batch"))
            else:
                first[it.okey] = pos
        if conflicts:
            raise OutcomeConflict(conflicts)
        unique = [items[p] for p in first.values()]
        existing: dict[str, tuple] = {}
        for part in _chunks([i.okey for i in unique]):
            for r in c.execute(select(outcomes.c.okey, outcomes.c.class_code, outcomes.c.value).where(and_(
                    outcomes.c.model == model, outcomes.c.okey.in_(part)))):
                existing[r[0]] = (r[1], r[2])
        new = []
        dup = 0
        for it in unique:
            if it.okey in existing:
                code, val = existing[it.okey]
                if _same(code, val, it.class_code, it.value):
                    dup += 1
                else:
                    conflicts.append((first[it.okey], "contradicts the outcome already stored for this prediction"))
            else:
                new.append(it)
        dup += len(items) - len(unique)
        if conflicts:
            raise OutcomeConflict(conflicts)
        resolved = self._resolve(c, model, new)
        rows = []
        for it in new:
            hit = resolved.get(it.okey)
            rows.append(dict(model=model, okey=it.okey, class_code=it.class_code, value=it.value,
                             observed_at=it.observed_at, received_at=now,
                             request_id=hit[0] if hit else it.request_id,
                             row_index=hit[1] if hit else it.row_index,
                             window_id=hit[2] if hit else None, seq=hit[3] if hit else None,
                             matched=hit is not None, matched_at=now if hit else None, expired=False))
        for part in _chunks(rows, 1000):
            c.execute(insert(outcomes), part)
        return IngestResult(accepted=len(new), duplicate=dup, pending=sum(1 for r in rows if not r["matched"]))

    def match_pending(self, model: str, expire_before: float, limit: int = 5000) -> tuple[int, int]:
        """Join outcomes that arrived before their prediction; expire the too old.
        Returns (matched, expired)."""
        with self.engine.begin() as c:
            rows = c.execute(select(outcomes.c.okey, outcomes.c.received_at).where(and_(
                outcomes.c.model == model, outcomes.c.matched.is_(False), outcomes.c.expired.is_(False)))
                .limit(limit)).all()
            if not rows:
                return 0, 0
            items = [_parse_okey(r[0]) for r in rows]
            resolved = self._resolve(c, model, [i for i in items if i is not None])
            matched = expired = 0
            for (okey, received), it in zip(rows, items):
                hit = resolved.get(okey)
                if hit is not None:
                    c.execute(update(outcomes).where(and_(outcomes.c.model == model, outcomes.c.okey == okey))
                              .values(request_id=hit[0], row_index=hit[1], window_id=hit[2], seq=hit[3],
                                      matched=True, matched_at=time.time()))
                    matched += 1
                elif received < expire_before:
                    c.execute(update(outcomes).where(and_(outcomes.c.model == model, outcomes.c.okey == okey))
                              .values(expired=True))
                    expired += 1
            return matched, expired

    def outcome_counts(self, model: str) -> dict[str, int]:
        with self.reader.connect() as c:
            rows = c.execute(select(outcomes.c.matched, outcomes.c.expired, func.count()).where(
                outcomes.c.model == model).group_by(outcomes.c.matched, outcomes.c.expired)).all()
        out = {"matched": 0, "pending": 0, "expired": 0}
        for matched, exp, n in rows:
            out["matched" if matched else "expired" if exp else "pending"] += int(n)
        return out

    def windows_to_score(self, model: str) -> list[tuple[int, float, int]]:
        """(window_id, when its newest outcome was joined, labelled rows) for windows with outcomes."""
        with self.reader.connect() as c:
            return [(int(w), float(t), int(n)) for w, t, n in c.execute(
                select(outcomes.c.window_id, func.max(outcomes.c.matched_at), func.count()).where(and_(
                    outcomes.c.model == model, outcomes.c.matched.is_(True))).group_by(outcomes.c.window_id))]

    def window_predictions(self, model: str, window_id: int) -> dict[str, Any]:
        """Every prediction of a window, with its outcome where one is matched (columnar).

        Two indexed scans (predictions by window, matched outcomes by window) aligned here,
        read with the driver's cursor straight into numpy: a join of 100,000 rows costs
        several times more on both SQLite and Postgres."""
        import numpy as np

        p, o = predictions.c, outcomes.c
        none = -1.0e300  # NULL sentinel, so that columns go to numpy without a Python loop
        where_pred = and_(p.model == model, p.window_id == window_id)
        q_pred = select(p.seq, func.coalesce(p.class_code, -1), func.coalesce(p.value, none),
                        p.predicted_at).where(where_pred).order_by(p.seq)
        q_proba = select(p.proba).where(where_pred).order_by(p.seq)
        q_out = select(o.seq, func.coalesce(o.class_code, -1), func.coalesce(o.value, none),
                       o.observed_at).where(and_(o.model == model, o.window_id == window_id, o.matched.is_(True)))
        with self.reader.connect() as c:
            pred_rows = self._raw(c, q_pred)
            proba_rows = self._raw(c, q_proba)
            out_rows = self._raw(c, q_out)
        n = len(pred_rows)
        empty = np.zeros(0)
        if n == 0:
            return {"n": 0, "pred_code": empty, "pred_value": empty, "proba": [], "predicted_at": empty,
                    "true_code": empty, "true_value": empty, "observed_at": empty, "labelled": np.zeros(0, bool)}
        P = np.array(pred_rows, dtype=np.float64)  # (n, 4): every column numeric, no Python loop
        P[:, 1][P[:, 1] == -1] = np.nan
        P[:, 2][P[:, 2] == none] = np.nan
        seq = P[:, 0].astype(np.int64)
        true_code = np.full(n, np.nan)
        true_value = np.full(n, np.nan)
        observed = np.full(n, np.nan)
        labelled = np.zeros(n, dtype=bool)
        if out_rows:
            O = np.array(out_rows, dtype=np.float64)
            oseq = O[:, 0].astype(np.int64)
            j = np.searchsorted(seq, oseq)  # predictions are sorted by seq
            ok = (j < n) & (seq[np.minimum(j, n - 1)] == oseq)
            j = j[ok]
            labelled[j] = True
            observed[j] = O[ok, 3]
            true_code[j] = np.where(O[ok, 1] == -1, np.nan, O[ok, 1])
            true_value[j] = np.where(O[ok, 2] == none, np.nan, O[ok, 2])
        return {"n": n, "pred_code": P[:, 1].copy(), "pred_value": P[:, 2].copy(),
                "proba": [r[0] for r in proba_rows], "predicted_at": P[:, 3].copy(), "true_code": true_code,
                "true_value": true_value, "observed_at": observed, "labelled": labelled}

    def _raw(self, c, query) -> list[tuple]:
        """Run a Core select on the DBAPI cursor (plain tuples, no per-row processing)."""
        compiled = query.compile(dialect=c.dialect)
        params = compiled.params
        if compiled.positiontup is not None:
            params = tuple(params[k] for k in compiled.positiontup)
        cur = c.connection.driver_connection.cursor()
        try:
            cur.execute(str(compiled), params)
            return cur.fetchall()
        except c.dialect.loaded_dbapi.Error as exc:  # the driver's own error: give callers SQLAlchemy's
            raise OperationalError(str(compiled), None, exc) from exc
        finally:
            cur.close()

    def save_performance(self, model: str, window_id: int, result: dict[str, Any], final: bool, labelled: int,
                         now: float) -> None:
        with self.engine.begin() as c:
            vals = dict(computed_at=now, final=final, labelled=labelled, result=json.dumps(result))
            res = c.execute(update(performance).where(and_(performance.c.model == model,
                                                           performance.c.window_id == window_id)).values(**vals))
            if res.rowcount == 0:
                try:
                    with c.begin_nested():
                        c.execute(insert(performance).values(model=model, window_id=window_id, **vals))
                except IntegrityError:
                    c.execute(update(performance).where(and_(performance.c.model == model,
                                                             performance.c.window_id == window_id)).values(**vals))

    def performance_state(self, model: str) -> dict[int, tuple[float, bool]]:
        with self.reader.connect() as c:
            return {int(w): (float(t), bool(f)) for w, t, f in c.execute(
                select(performance.c.window_id, performance.c.computed_at, performance.c.final)
                .where(performance.c.model == model))}

    def performance_windows(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.reader.connect() as c:
            rows = c.execute(select(performance.c.result).where(performance.c.model == model)
                             .order_by(performance.c.window_id.desc()).limit(limit)).all()
        return [json.loads(r[0]) for r in rows]

    def purge(self, model: str, before: float) -> dict[str, int]:
        """Retention: delete this model's rows older than ``before`` (see :func:`_purge`),
        and its alert history and delivered or failed notifications."""
        out = _purge(self.engine, model, before)
        out["alert_history"] = self.purge_alerts(model, before)
        return out

    def window_prediction_count(self, model: str, window_id: int) -> int:
        with self.reader.connect() as c:
            return int(c.execute(select(func.count()).select_from(predictions).where(and_(
                predictions.c.model == model, predictions.c.window_id == window_id))).scalar() or 0)


def _purge(engine: Engine, model: str, before: float) -> dict[str, int]:
    """Delete what is older than ``before`` (epoch seconds): predictions by prediction time,
    their outcomes, expired outcomes, and performance/window results of windows whose
    predictions are all gone. Returns the rows deleted per table."""
    out = {}
    with engine.begin() as c:
        oldest_kept = c.execute(select(func.min(predictions.c.window_id)).where(and_(
            predictions.c.model == model, predictions.c.predicted_at >= before))).scalar()
        out["predictions"] = c.execute(delete(predictions).where(and_(
            predictions.c.model == model, predictions.c.predicted_at < before))).rowcount
        out["outcomes"] = c.execute(delete(outcomes).where(and_(
            outcomes.c.model == model, outcomes.c.received_at < before))).rowcount
        if oldest_kept is not None:
            out["performance"] = c.execute(delete(performance).where(and_(
                performance.c.model == model, performance.c.window_id < oldest_kept))).rowcount
            out["window_results"] = c.execute(delete(window_results).where(and_(
                window_results.c.model == model, window_results.c.window_id < oldest_kept,
                window_results.c.status == "done"))).rowcount
    return out


def _parse_okey(okey: str) -> OutcomeIn | None:
    kind, _, rest = okey.partition(":")
    try:
        if kind == "r":
            rid, _, idx = rest.rpartition(":")
            return OutcomeIn(okey, None, None, 0.0, request_id=rid, row_index=int(idx))
        if kind == "i":
            return OutcomeIn(okey, None, None, 0.0, instance_id=rest)
        if kind == "c":
            cid, _, idx = rest.rpartition(":")
            return OutcomeIn(okey, None, None, 0.0, client_request_id=cid, row_index=int(idx))
    except ValueError:
        return None
    return None


class Store(_PredictionLog, _AlertStore):
    """Create with a SQLAlchemy URL; tables are created if absent."""

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
        if v is not None and v < SCHEMA_VERSION:
            v = self._migrate(v)
        if v != SCHEMA_VERSION:
            raise RuntimeError(f"store schema version {v}; this Vigil needs {SCHEMA_VERSION}")

    def _migrate(self, version: int) -> int:
        """Bring an older store up to :data:`SCHEMA_VERSION` (new tables were created by
        ``create_all`` already; columns added to existing tables are added here)."""
        from sqlalchemy import inspect as sa_inspect

        with self.engine.begin() as c:
            current = c.execute(select(func.max(schema_version.c.version))).scalar()
            if current is not None and current >= SCHEMA_VERSION:
                return int(current)
            if current == 1:  # v2: window_results.sketch (re-baselining), alert tables
                cols = {col["name"] for col in sa_inspect(c).get_columns("vigil_window_results")}
                if "sketch" not in cols:
                    c.exec_driver_sql("ALTER TABLE vigil_window_results ADD COLUMN sketch TEXT")
                c.execute(update(schema_version).values(version=2))
                current = 2
            return int(current)

    def window_sketch(self, model: str, window_id: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(merged profile, report) of an evaluated window; (None, None) if unknown."""
        with self.reader.connect() as c:
            r = c.execute(select(window_results.c.sketch, window_results.c.report).where(and_(
                window_results.c.model == model, window_results.c.window_id == window_id,
                window_results.c.status == "done"))).first()
        if r is None:
            return None, None
        return (json.loads(r[0]) if r[0] else None), (json.loads(r[1]) if r[1] else None)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()

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
        with self.reader.connect() as c:
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
        with self.reader.connect() as c:
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
        with self.reader.connect() as c:
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
        with self.reader.connect() as c:
            rows = c.execute(select(window_partials).where(and_(
                window_partials.c.model == model, window_partials.c.window_id == window_id))).mappings().all()
        return [Partial(r["worker"], int(r["rows"]), r["first_at"], r["last_at"], json.loads(r["sketch"]),
                        json.loads(r["rejected"])) for r in rows]

    def finish(self, model: str, window_id: int, worker: str, report: dict[str, Any], rows: int, rows_expected: int,
               started_at: float | None, ended_at: float | None, now: float,
               sketch: dict[str, Any] | None = None) -> bool:
        """Store the evaluated window and drop its partials. False if another evaluator took over."""
        with self.engine.begin() as c:
            res = c.execute(update(window_results).where(and_(
                window_results.c.model == model, window_results.c.window_id == window_id,
                window_results.c.claimed_by == worker, window_results.c.status == "evaluating")).values(
                status="done", rows=rows, rows_expected=rows_expected, started_at=started_at, ended_at=ended_at,
                evaluated_at=now, report=json.dumps(report, allow_nan=True),
                sketch=None if sketch is None else json.dumps(sketch)))
            if res.rowcount != 1:
                return False
            c.execute(delete(window_partials).where(and_(window_partials.c.model == model,
                                                         window_partials.c.window_id == window_id)))
            # only recent windows keep their sketch (what re-baselining can adopt): ~20 KB each
            c.execute(update(window_results).where(and_(
                window_results.c.model == model, window_results.c.window_id < window_id - KEEP_SKETCHES,
                window_results.c.sketch.is_not(None))).values(sketch=None))
            return True

    def windows(self, model: str, limit: int = 50) -> list[WindowRecord]:
        """Evaluated windows, newest first."""
        with self.reader.connect() as c:
            rows = c.execute(select(window_results).where(and_(window_results.c.model == model,
                                                               window_results.c.status == "done"))
                             .order_by(window_results.c.window_id.desc()).limit(limit)).mappings().all()
        return [WindowRecord(int(r["window_id"]), r["status"], r["rows"], r["rows_expected"], r["started_at"],
                             r["ended_at"], r["evaluated_at"], json.loads(r["report"]) if r["report"] else None)
                for r in rows]
