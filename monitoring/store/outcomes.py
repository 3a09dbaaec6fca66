"""The prediction log, outcomes and performance results (tables ``vigil_predictions``,
``vigil_outcomes``, ``vigil_performance``): what ``/feedback`` joins and what the
performance tracker scores.

Predictions are logged by the monitor thread in one transaction per batch (a retried
flush is harmless: rows already logged are skipped). Outcomes arrive through
:meth:`OutcomeStore.ingest_group`: several ``/feedback`` requests in one transaction, each
in its own savepoint, so that a conflicting request (:class:`OutcomeConflict`) is rolled
back alone and the others commit with one fsync. An outcome may arrive before its
prediction; :meth:`OutcomeStore.match_pending` joins it later (or expires it), and marks
its window for re-scoring.

Transactions: every public method is one transaction and commits before it returns.
Failure mode: any database error surfaces as
:class:`~monitoring.store.errors.StoreUnavailable`, with nothing of the call committed
(for :meth:`OutcomeStore.ingest_group`: nothing of any batch in the group).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from monitoring.intake.labels import plan_ingest
from monitoring.intake.outcomes import OutcomeIn
from monitoring.store.errors import OutcomeConflict, guarded
from monitoring.store.tables import counters, outcomes, performance, predictions


@dataclass(frozen=True)
class IngestResult:
    """``accepted`` (stored now: matched or ``pending``), ``duplicate`` (already stored, under
    any key of the same prediction), ``unknown`` ((position, why) of outcomes not kept: they
    name no prediction), ``replaced`` (provisional labels superseded)."""

    accepted: int
    duplicate: int
    pending: int
    unknown: tuple[tuple[int, str], ...] = ()
    replaced: int = 0


_CHUNK = 400


def _chunks(seq, n=_CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]




@guarded
class OutcomeStore:
    """``store.outcomes``: the prediction log, outcome ingest and joins, performance results."""

    def __init__(self, engine: Engine, reader: Engine, joins):
        self._engine = engine
        self._reader = reader
        self._joins = joins  # a monitoring.store.joins.OutcomeJoins (the facade composes them)
        self._sweep: dict[str, tuple[float, str]] = {}  # per model: where the last sweep stopped

    def log_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Insert prediction rows of one model in one transaction, and join the outcomes
        that were waiting for them (looked up by their keys). A row already logged (a
        retried flush) is skipped by the database (ON CONFLICT DO NOTHING). Goes through the
        driver's ``executemany``: SQLAlchemy's per-row parameter handling would cost more
        than the insert itself."""
        if not rows:
            return
        models = sorted({r["model"] for r in rows})
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # other databases: the portable (slower) path
            with self._engine.begin() as c:
                for part in _chunks(rows, 1000):
                    c.execute(insert(predictions), part)
                self._join_logged(c, models, rows)
            return
        stmt = dialect_insert(predictions).on_conflict_do_nothing(
            index_elements=[predictions.c.model, predictions.c.request_id, predictions.c.row_index])
        compiled = stmt.compile(dialect=self._engine.dialect, column_keys=list(rows[0]))
        sql = str(compiled)
        order = compiled.positiontup
        with self._engine.begin() as c:
            for model in models:
                self._joins.lock(c, model, exclusive=False)
            cur = c.connection.driver_connection.cursor()
            try:
                for part in _chunks(rows, 5000):
                    if order is not None:
                        cur.executemany(sql, [tuple(r[k] for k in order) for r in part])
                    else:
                        cur.executemany(sql, part)
            except c.dialect.loaded_dbapi.Error as exc:  # the driver's own: as SQLAlchemy's (translated at the edge)
                raise OperationalError(sql, None, exc) from exc
            finally:
                cur.close()
            self._join_logged(c, models, rows)

    def _join_logged(self, c, models: list[str], rows: list[dict[str, Any]]) -> None:
        for model in models:
            self._joins.join_logged(c, model, rows if len(models) == 1 else [r for r in rows if r["model"] == model])

    def request_id_key(self, model: str) -> bytes:
        """The model's request-id key (:class:`~monitoring.intake.outcomes.RequestIds`),
        made on first use and kept in the counters table so that every worker and replica
        issues and recognises the same ids."""
        name = f"key:request_ids:{model}"
        with self._engine.begin() as c:
            value = c.execute(select(counters.c.value).where(counters.c.name == name)).scalar()
            if value is None:
                value = secrets.randbits(62) + 1
                try:
                    with c.begin_nested():
                        c.execute(insert(counters).values(name=name, value=value))
                except IntegrityError:  # another worker made it first
                    value = c.execute(select(counters.c.value).where(counters.c.name == name)).scalar()
        return int(value).to_bytes(8, "big")

    def ingest(self, model: str, items: list[OutcomeIn], now: float) -> IngestResult:
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
        with self._engine.begin() as c:
            self._joins.lock(c, model, exclusive=True)
            for items in batches:
                for attempt in (0, 1):
                    try:
                        with c.begin_nested():
                            out.append(self._ingest(c, model, items, now))
                        break
                    except OutcomeConflict as exc:
                        out.append(exc)
                        break
                    except IntegrityError:  # another writer labelled one of these predictions meanwhile
                        if attempt:         # (a database without the lock): decided again, it is seen
                            raise
        return out

    def _ingest(self, c, model: str, items: list[OutcomeIn], now: float) -> IngestResult:
        okeys = list({i.okey: None for i in items})
        stored = self._joins.stored(c, model, okeys)
        waiting = {k: v for k, v in stored.items() if not v.matched and not v.expired}
        if waiting and any(self._joins.join(c, model, waiting, now)):  # their prediction came meanwhile
            stored = self._joins.stored(c, model, okeys)
        plan = plan_ingest(items, self._joins.lookup(c, model, items, stored))
        if plan.conflicts:
            raise OutcomeConflict(sorted(plan.conflicts + plan.unknown))
        for part in _chunks(list(plan.replace)):
            c.execute(delete(outcomes).where(and_(outcomes.c.model == model, outcomes.c.okey.in_(part))))
        rows = [dict(model=model, okey=it.okey, class_code=it.class_code, value=it.value, observed_at=it.observed_at,
                     received_at=now, request_id=p.request_id if p else it.request_id,
                     row_index=p.row_index if p else it.row_index, window_id=p.window_id if p else None,
                     seq=p.seq if p else None, matched=p is not None, matched_at=now if p else None, expired=False)
                for it, p in plan.insert]
        for part in _chunks(rows, 1000):
            c.execute(insert(outcomes), part)
        return IngestResult(accepted=len(rows), duplicate=plan.duplicate, pending=plan.pending,
                            unknown=plan.unknown, replaced=len(plan.replace))

    def match_pending(self, model: str, expire_before: float, limit: int = 1000) -> tuple[int, int]:
        """Expire outcomes waiting since before ``expire_before``, and sweep the next
        ``limit`` waiting ones (oldest first, resuming where the last sweep stopped) for a
        prediction that was logged without meeting them. Joins happen when predictions are
        logged and when outcomes are stored; the sweep is a safety net whose cost is
        bounded per call whatever waits. Returns (matched, expired)."""
        o = outcomes.c
        waiting = and_(o.model == model, o.matched.is_(False), o.expired.is_(False))
        with self._engine.begin() as c:
            self._joins.lock(c, model, exclusive=False)
            expired = c.execute(update(outcomes).where(and_(waiting, o.received_at < expire_before))
                                .values(expired=True, closed="expired")).rowcount
            rows = self._joins.waiting_after(c, model, self._sweep.get(model, (-1.0, "")), limit)
            last = max(rows.values(), key=lambda r: (r.received_at, r.okey)) if len(rows) == limit else None
            self._sweep[model] = (last.received_at, last.okey) if last is not None else (-1.0, "")
            matched, _ = self._joins.join(c, model, rows, time.time())
        return matched, expired

    def counts(self, model: str) -> dict[str, int]:
        """Outcomes by state: ``matched``, ``pending`` (waiting for their prediction),
        ``expired`` (waited too long) and ``conflicting`` (their prediction got another label)."""
        o = outcomes.c
        with self._reader.connect() as c:
            rows = c.execute(select(o.matched, o.expired, o.closed, func.count()).where(o.model == model)
                             .group_by(o.matched, o.expired, o.closed)).all()
        out = {"matched": 0, "pending": 0, "expired": 0, "conflicting": 0}
        for matched, exp, closed, n in rows:
            out["matched" if matched else "pending" if not exp else
                "conflicting" if closed == "conflict" else "expired"] += int(n)
        return out

    def windows_to_score(self, model: str) -> list[tuple[int, float, int]]:
        """(window_id, when its newest outcome was joined, labelled rows) for windows with outcomes."""
        with self._reader.connect() as c:
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
        with self._reader.connect() as c:
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

    def window_features(self, model: str, window_id: int) -> tuple[list, list]:
        """(predicted values, logged feature JSON) of a window's rows whose features were
        logged (``log_sample_rate``), in row order: what DLE reads (one indexed scan)."""
        p = predictions.c
        q = select(p.value, p.features).where(and_(p.model == model, p.window_id == window_id,
                                                   p.features.is_not(None))).order_by(p.seq)
        with self._reader.connect() as c:
            rows = self._raw(c, q)
        return [r[0] for r in rows], [r[1] for r in rows]

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
        except c.dialect.loaded_dbapi.Error as exc:  # the driver's own: as SQLAlchemy's (translated at the edge)
            raise OperationalError(str(compiled), None, exc) from exc
        finally:
            cur.close()

    def save_performance(self, model: str, window_id: int, result: dict[str, Any], final: bool, labelled: int,
                         now: float) -> None:
        """Store (or replace) a window's scored performance. Any worker may score a window;
        the result is a function of the stored rows, so the last write wins safely."""
        with self._engine.begin() as c:
            vals = dict(computed_at=now, final=final, labelled=labelled, result=json.dumps(result))
            res = c.execute(update(performance).where(and_(performance.c.model == model,
                                                           performance.c.window_id == window_id)).values(**vals))
            if res.rowcount == 0:
                try:
                    with c.begin_nested():
                        c.execute(insert(performance).values(model=model, window_id=window_id, **vals))
                except IntegrityError:  # another worker inserted it meanwhile: last write wins
                    c.execute(update(performance).where(and_(performance.c.model == model,
                                                             performance.c.window_id == window_id)).values(**vals))

    def performance_state(self, model: str) -> dict[int, tuple[float, bool]]:
        with self._reader.connect() as c:
            return {int(w): (float(t), bool(f)) for w, t, f in c.execute(
                select(performance.c.window_id, performance.c.computed_at, performance.c.final)
                .where(performance.c.model == model))}

    def performance_windows(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        with self._reader.connect() as c:
            rows = c.execute(select(performance.c.result).where(performance.c.model == model)
                             .order_by(performance.c.window_id.desc()).limit(limit)).all()
        return [json.loads(r[0]) for r in rows]

    def window_prediction_count(self, model: str, window_id: int) -> int:
        with self._reader.connect() as c:
            return int(c.execute(select(func.count()).select_from(predictions).where(and_(
                predictions.c.model == model, predictions.c.window_id == window_id))).scalar() or 0)

    def oldest_logged_window(self, model: str) -> int | None:
        """The oldest window that still has logged predictions (None if none): results of
        older windows describe rows that retention already deleted."""
        with self._reader.connect() as c:
            return c.execute(select(func.min(predictions.c.window_id)).where(predictions.c.model == model)).scalar()

    def purge(self, model: str, before: float) -> dict[str, int]:
        """Retention, one transaction: delete predictions made before ``before`` (epoch
        seconds), outcomes received before it (matched, pending or expired), and the
        performance results of windows whose predictions are all gone (or, when no
        prediction is left, computed before it). Returns the rows deleted per table."""
        out = {}
        with self._engine.begin() as c:
            oldest_kept = c.execute(select(func.min(predictions.c.window_id)).where(and_(
                predictions.c.model == model, predictions.c.predicted_at >= before))).scalar()
            out["predictions"] = c.execute(delete(predictions).where(and_(
                predictions.c.model == model, predictions.c.predicted_at < before))).rowcount
            out["outcomes"] = c.execute(delete(outcomes).where(and_(
                outcomes.c.model == model, outcomes.c.received_at < before))).rowcount
            # results of windows whose predictions are all gone; with none left at all, by age
            gone = (performance.c.window_id < oldest_kept if oldest_kept is not None
                    else performance.c.computed_at < before)
            out["performance"] = c.execute(delete(performance).where(and_(performance.c.model == model,
                                                                          gone))).rowcount
        return out
