"""The SQL side of joining outcomes to predictions: lookups and writes on a connection
inside a transaction the caller (:class:`~monitoring.store.outcomes.OutcomeStore`) owns.
The rules they feed are :mod:`monitoring.intake.labels`; the facade hands an
:class:`OutcomeJoins` to the outcome store (store modules never import each other).

Joins happen from both sides, by index lookups, never by scanning what waits: when
outcomes are stored (their keys' predictions are looked up) and when predictions are
logged (outcomes waiting under the keys of the logged rows are looked up by primary key).
On Postgres a per-model advisory lock orders the two sides (:meth:`OutcomeJoins.lock`).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from monitoring.intake.labels import Lookup, Prediction, StoredOutcome, plan_join
from monitoring.intake.outcomes import OutcomeIn, parse_okey
from monitoring.store.tables import outcomes, predictions

_CHUNK = 400
_OUT = (outcomes.c.okey, outcomes.c.class_code, outcomes.c.value, outcomes.c.received_at, outcomes.c.matched,
        outcomes.c.expired, outcomes.c.request_id, outcomes.c.row_index)


def _chunks(seq, n=_CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _stored(r) -> StoredOutcome:
    return StoredOutcome(r[0], r[1], r[2], float(r[3]), bool(r[4]), bool(r[5]),
                         (r[6], int(r[7])) if r[4] else None)


class OutcomeJoins:
    """Stateless; every method works on the connection ``c`` it is given."""

    def lookup(self, c, model: str, items: list[OutcomeIn], stored: dict | None = None) -> Lookup:
        """What :mod:`~monitoring.intake.labels` needs to decide ``items``: the predictions
        their keys name (a caller id names its first prediction), the size of a logged
        request whose row a key misses, and the labels those predictions already have.
        Every query is an indexed equality IN list (tuple IN lists defeat indexes on some
        databases; rows are matched here)."""
        p = predictions.c
        cols = (p.request_id, p.row_index, p.window_id, p.seq, p.predicted_at)
        hits: dict[str, tuple] = {}
        sizes: dict[str, int] = {}
        preds: dict[tuple, Prediction] = {}
        groups: dict[str, dict[str, list[OutcomeIn]]] = {"r": {}, "i": {}, "c": {}}
        for i in items:
            groups[i.okey[0]].setdefault(i.key_id, []).append(i)
        for kind, column in (("r", p.request_id), ("i", p.instance_id), ("c", p.client_request_id)):
            for part in _chunks(list(groups[kind])):
                rows = c.execute(select(column, *cols).where(and_(p.model == model, column.in_(part)))
                                 .order_by(p.seq)).all()
                first: dict[str, str] = {}  # caller id -> the request of its first prediction
                by_row: dict[tuple, Prediction] = {}
                count: dict[str, int] = {}
                for key, *rest in rows:  # in row order: the first prediction with an id comes first
                    pred = Prediction(*rest)
                    first.setdefault(key, pred.request_id)
                    if pred.request_id == first[key]:
                        by_row.setdefault((key, pred.row_index if kind != "i" else -1), pred)
                        count[key] = count.get(key, 0) + 1
                for key in part:
                    for i in groups[kind][key]:
                        pred = by_row.get((key, i.row_index if kind != "i" else -1))
                        if pred is not None:
                            hits[i.okey] = pred.key
                            preds[pred.key] = pred
                        elif key in count and kind != "i":
                            sizes[i.okey] = count[key]
        stored = stored or {}
        need = set(preds) | {s.prediction for s in stored.values() if s.prediction is not None}
        missing = {k for k in need if k not in preds}
        for part in _chunks(sorted({k[0] for k in missing})):
            for pred in c.execute(select(*cols).where(and_(p.model == model, p.request_id.in_(part)))):
                pred = Prediction(*pred)
                if pred.key in missing:
                    preds[pred.key] = pred
        labels = {}
        for part in _chunks(sorted({k[0] for k in need})):
            # by request id alone (the prediction index); a state condition here made SQLite
            # walk every matched outcome of the model through the waiting index instead
            for row in c.execute(select(*_OUT).where(and_(outcomes.c.model == model,
                                                          outcomes.c.request_id.in_(part)))):
                out = _stored(row)
                if out.matched and out.prediction in need:
                    labels[out.prediction] = out
        return Lookup(hits, sizes, preds, labels, stored)

    def stored(self, c, model: str, okeys: list[str], waiting_only: bool = False) -> dict[str, StoredOutcome]:
        """Outcomes stored under ``okeys`` (primary-key lookups; the state is filtered here:
        a state condition in SQL lets the planner pick the waiting index and scan it)."""
        out = {}
        for part in _chunks(okeys):
            q = select(*_OUT).where(and_(outcomes.c.model == model, outcomes.c.okey.in_(part)))
            out.update((r[0], _stored(r)) for r in c.execute(q))
        if waiting_only:
            out = {k: v for k, v in out.items() if not v.matched and not v.expired}
        return out

    def lock(self, c, model: str, exclusive: bool) -> None:
        """Postgres: a per-model advisory lock orders the two sides of a join. Logging
        predictions (shared) and storing outcomes (exclusive) each look for the other's rows
        after taking it, so an outcome and its prediction committed at the same moment by
        two replicas still meet. SQLite writers are serialised by BEGIN IMMEDIATE already."""
        if c.dialect.name == "postgresql":
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            c.execute(select(getattr(func, fn)(func.hashtext(f"vigil.outcomes:{model}"))))

    def join(self, c, model: str, waiting: dict[str, StoredOutcome], now: float) -> tuple[int, int]:
        """Join waiting outcomes whose prediction is logged (rules: :func:`plan_join`).
        Returns (matched, closed: conflicting or redundant)."""
        if not waiting:
            return 0, 0
        keys = [parse_okey(k) for k in waiting]
        plan = plan_join(waiting.values(), self.lookup(c, model, [k for k in keys if k is not None]))
        o = outcomes.c
        for okey, pred in plan.matched:
            c.execute(update(outcomes).where(and_(o.model == model, o.okey == okey)).values(
                request_id=pred.request_id, row_index=pred.row_index, window_id=pred.window_id, seq=pred.seq,
                matched=True, matched_at=now))
        for part in _chunks(list(plan.redundant)):
            c.execute(delete(outcomes).where(and_(o.model == model, o.okey.in_(part))))
        for part in _chunks(list(plan.conflicting)):
            c.execute(update(outcomes).where(and_(o.model == model, o.okey.in_(part))).values(
                expired=True, closed="conflict"))
        return len(plan.matched), len(plan.conflicting) + len(plan.redundant)

    def join_logged(self, c, model: str, rows: list[dict[str, Any]]) -> None:
        """From the prediction side: outcomes waiting for the rows just logged, found by
        their keys (primary-key lookups; nothing scans the waiting outcomes)."""
        o = outcomes.c
        if c.execute(select(o.okey).where(and_(o.model == model, o.matched.is_(False), o.expired.is_(False)))
                     .limit(1)).first() is None:
            return  # nothing waits: the common case costs one indexed probe
        keys = []
        for r in rows:
            keys.append(f"r:{r['request_id']}:{r['row_index']}")
            if r.get("client_request_id") is not None:
                keys.append(f"c:{r['client_request_id']}:{r['row_index']}")
            if r.get("instance_id") is not None:
                keys.append(f"i:{r['instance_id']}")
        self.join(c, model, self.stored(c, model, keys, waiting_only=True), time.time())

    def waiting_after(self, c, model: str, after: tuple[float, str], limit: int) -> dict[str, StoredOutcome]:
        """Up to ``limit`` waiting outcomes after ``after`` (received_at, okey), oldest first."""
        o = outcomes.c
        t, k = after
        rows = c.execute(select(*_OUT).where(and_(
            o.model == model, o.matched.is_(False), o.expired.is_(False),
            or_(o.received_at > t, and_(o.received_at == t, o.okey > k)))).order_by(o.received_at, o.okey)
            .limit(limit)).all()
        return {r[0]: _stored(r) for r in rows}
