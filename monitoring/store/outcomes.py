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
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from monitoring.intake.outcomes import OutcomeIn
from monitoring.store.errors import OutcomeConflict, guarded
from monitoring.store.tables import outcomes, performance, predictions


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



@guarded
class OutcomeStore:
    """``store.outcomes``: the prediction log, outcome ingest and joins, performance results."""

    def __init__(self, engine: Engine, reader: Engine):
        self._engine = engine
        self._reader = reader

    def log_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Insert prediction rows in one transaction; a row already logged (a retried
        flush) is skipped by the database (ON CONFLICT DO NOTHING). Goes through the
        driver's ``executemany``: SQLAlchemy's per-row parameter handling would cost more
        than the insert itself."""
        if not rows:
            return
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # other databases: the portable (slower) path
            with self._engine.begin() as c:
                for part in _chunks(rows, 1000):
                    c.execute(insert(predictions), part)
            return
        stmt = dialect_insert(predictions).on_conflict_do_nothing(
            index_elements=[predictions.c.model, predictions.c.request_id, predictions.c.row_index])
        compiled = stmt.compile(dialect=self._engine.dialect, column_keys=list(rows[0]))
        sql = str(compiled)
        order = compiled.positiontup
        with self._engine.begin() as c:
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
        with self._engine.begin() as c:
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

    def counts(self, model: str) -> dict[str, int]:
        with self._reader.connect() as c:
            rows = c.execute(select(outcomes.c.matched, outcomes.c.expired, func.count()).where(
                outcomes.c.model == model).group_by(outcomes.c.matched, outcomes.c.expired)).all()
        out = {"matched": 0, "pending": 0, "expired": 0}
        for matched, exp, n in rows:
            out["matched" if matched else "expired" if exp else "pending"] += int(n)
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
        performance results of windows whose predictions are all gone. Returns the rows
        deleted per table."""
        out = {}
        with self._engine.begin() as c:
            oldest_kept = c.execute(select(func.min(predictions.c.window_id)).where(and_(
                predictions.c.model == model, predictions.c.predicted_at >= before))).scalar()
            out["predictions"] = c.execute(delete(predictions).where(and_(
                predictions.c.model == model, predictions.c.predicted_at < before))).rowcount
            out["outcomes"] = c.execute(delete(outcomes).where(and_(
                outcomes.c.model == model, outcomes.c.received_at < before))).rowcount
            if oldest_kept is not None:
                out["performance"] = c.execute(delete(performance).where(and_(
                    performance.c.model == model, performance.c.window_id < oldest_kept))).rowcount
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
