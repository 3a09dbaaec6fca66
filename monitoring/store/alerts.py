"""The store's alert tables: alert state, alert history, the notification outbox,
silences, acknowledgements and adopted references (re-baselining).

Every transition is written in the same transaction as the state that caused it and the
outbox rows that announce it, so a notification is never lost (a worker that dies after
the commit leaves the rows for another) and never invented (a rolled-back evaluation leaves
none). Outbox rows have a unique idempotency key per transition and sink; delivery takes a
time-limited lease on a row, so several workers deliver each row once in practice and at
least once when a worker dies mid-delivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text, and_, delete,
                        func, insert, or_, select, update)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from monitoring.alerts import AlertState
from monitoring.values import finite_or_none

# Tables live on the store's metadata (imported by store.py, which creates them).
from monitoring.store.tables import metadata

alerts = Table(
    "vigil_alerts", metadata,
    Column("model", String(300), primary_key=True),
    Column("rule", String(100), primary_key=True),
    Column("instance", String(300), primary_key=True),   # feature/class/metric, "" for one-value series
    Column("state", String(10), nullable=False),
    Column("bad", Integer, nullable=False),
    Column("good", Integer, nullable=False),
    Column("pending_since", Float),
    Column("fired_at", Float),
    Column("resolved_at", Float),
    Column("last_window", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("value", Float),
    Column("severity", String(10), nullable=False),
    Column("changed_at", Float, nullable=False),
    Column("notified_state", String(10)),                # last state announced (firing/resolved)
    Column("notified_at", Float),
    Column("repeats", Integer, nullable=False, default=0),
    Column("acked_at", Float),
    Column("acked_by", String(200)),
    Column("evidence", Text),                            # JSON of the last transition's evidence
    Column("data", Text),                                # JSON: per-rule memory (e.g. latency baseline windows)
)

alert_events = Table(
    "vigil_alert_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(300), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("instance", String(300), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("state", String(20), nullable=False),         # firing | resolved | repeat | acknowledged
    Column("at", Float, nullable=False),
    Column("window_id", BigInteger),
    Column("notified", Boolean, nullable=False),
    Column("payload", Text, nullable=False),
)
Index("ix_vigil_alert_events_model", alert_events.c.model, alert_events.c.id)

outbox = Table(
    "vigil_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(300), nullable=False),
    Column("key", String(700), nullable=False, unique=True),  # idempotency key: transition + sink
    Column("sink", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("claimed_by", String(200)),
    Column("delivered_at", Float),
    Column("failed", Boolean, nullable=False, default=False),
    Column("last_error", Text),
)
Index("ix_vigil_outbox_due", outbox.c.model, outbox.c.delivered_at, outbox.c.failed, outbox.c.next_at)

silences = Table(
    "vigil_silences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(300), nullable=False),
    Column("rule", String(100), nullable=False),          # "*" silences every rule
    Column("instance", String(300)),                      # None: every instance
    Column("created_at", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("reason", Text),
    Column("created_by", String(200)),
)

references = Table(
    "vigil_references", metadata,
    Column("model", String(300), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("window_id", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
    Column("sketch", Text, nullable=False),
)


@dataclass(frozen=True)
class StoredAlert:
    rule: str
    instance: str
    state: AlertState
    severity: str
    changed_at: float
    notified_state: str | None
    notified_at: float | None
    repeats: int
    acked_at: float | None
    acked_by: str | None
    evidence: dict[str, Any] | None
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {"rule": self.rule, "instance": self.instance or None, "state": s.state, "severity": self.severity,
                "value": s.value, "since": s.pending_since if s.state == "pending" else s.fired_at
                if s.state == "firing" else s.resolved_at, "fired_at": s.fired_at, "resolved_at": s.resolved_at,
                "consecutive_abnormal": s.bad, "last_window": s.last_window, "notified_state": self.notified_state,
                "acknowledged_at": self.acked_at, "acknowledged_by": self.acked_by, "evidence": self.evidence}


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    sink: str
    payload: dict[str, Any]
    attempts: int


def _row_to_alert(r) -> StoredAlert:
    st = AlertState(r["state"], r["bad"], r["good"], r["pending_since"], r["fired_at"], r["resolved_at"],
                    int(r["last_window"]), r["seq"], r["value"])
    return StoredAlert(r["rule"], r["instance"], st, r["severity"], r["changed_at"], r["notified_state"],
                       r["notified_at"], r["repeats"] or 0, r["acked_at"], r["acked_by"],
                       json.loads(r["evidence"]) if r["evidence"] else None, json.loads(r["data"]) if r["data"] else {})


class _AlertStore:
    """Mixin: the alert methods of :class:`~monitoring.store.Store`."""

    engine: Engine
    reader: Engine

    # -- state ---------------------------------------------------------------------
    def lock_alerts(self, c: Connection, model: str) -> dict[tuple[str, str], StoredAlert]:
        """Read (and, on Postgres, lock) every alert row of a model inside ``c``'s
        transaction. SQLite's BEGIN IMMEDIATE already serialises writers."""
        q = select(alerts).where(alerts.c.model == model)
        if c.dialect.name == "postgresql":
            q = q.with_for_update()
        return {(r["rule"], r["instance"]): _row_to_alert(r) for r in c.execute(q).mappings()}

    def save_alert(self, c: Connection, model: str, rule: str, instance: str, st: AlertState, severity: str,
                   now: float, *, exists: bool, evidence: dict | None = None, data: dict | None = None,
                   notified_state: str | None | bool = False, notified_at: float | None = None,
                   clear_ack: bool = False) -> None:
        vals: dict[str, Any] = dict(state=st.state, bad=st.bad, good=st.good, pending_since=st.pending_since,
                                    fired_at=st.fired_at, resolved_at=st.resolved_at, last_window=st.last_window,
                                    seq=st.seq, value=finite_or_none(st.value), severity=severity, changed_at=now)
        if evidence is not None:
            vals["evidence"] = json.dumps(evidence)
        if data is not None:
            vals["data"] = json.dumps(data)
        if notified_state is not False:
            vals["notified_state"] = notified_state
            vals["notified_at"] = notified_at
            vals["repeats"] = 0
        if clear_ack:
            vals["acked_at"] = None
            vals["acked_by"] = None
        if exists:
            c.execute(update(alerts).where(and_(alerts.c.model == model, alerts.c.rule == rule,
                                                alerts.c.instance == instance)).values(**vals))
        else:
            c.execute(insert(alerts).values(model=model, rule=rule, instance=instance, **vals))

    def add_event(self, c: Connection, model: str, rule: str, instance: str, seq: int, state: str, at: float,
                  window_id: int | None, notified: bool, payload: dict[str, Any]) -> None:
        c.execute(insert(alert_events).values(model=model, rule=rule, instance=instance, seq=seq, state=state, at=at,
                                              window_id=window_id, notified=notified, payload=json.dumps(payload)))

    def enqueue(self, c: Connection, model: str, key: str, sinks: Iterable[str], payload: dict[str, Any],
                now: float) -> int:
        """Outbox rows for one notification, one per sink; a key already queued is skipped."""
        n = 0
        body = json.dumps(payload)
        for sink in sinks:
            k = f"{key}#{sink}"
            if c.execute(select(outbox.c.id).where(outbox.c.key == k)).first() is not None:
                continue
            c.execute(insert(outbox).values(model=model, key=k, sink=sink, created_at=now, payload=body, attempts=0,
                                            next_at=now, failed=False))
            n += 1
        return n

    def alerts(self, model: str) -> list[StoredAlert]:
        with self.reader.connect() as c:
            rows = c.execute(select(alerts).where(alerts.c.model == model)
                             .order_by(alerts.c.rule, alerts.c.instance)).mappings().all()
        return [_row_to_alert(r) for r in rows]

    def alert_events(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.reader.connect() as c:
            rows = c.execute(select(alert_events).where(alert_events.c.model == model)
                             .order_by(alert_events.c.id.desc()).limit(limit)).mappings().all()
        return [{"id": r["id"], "rule": r["rule"], "instance": r["instance"] or None, "seq": r["seq"],
                 "state": r["state"], "at": r["at"], "window_id": r["window_id"], "notified": bool(r["notified"]),
                 **json.loads(r["payload"])} for r in rows]

    def acknowledge(self, model: str, rule: str, instance: str | None, by: str | None, now: float) -> int:
        """Acknowledge firing alerts of a rule (one instance, or all). Returns how many."""
        with self.engine.begin() as c:
            cond = [alerts.c.model == model, alerts.c.rule == rule, alerts.c.state == "firing"]
            if instance is not None:
                cond.append(alerts.c.instance == instance)
            rows = c.execute(select(alerts.c.instance, alerts.c.seq).where(and_(*cond))).all()
            c.execute(update(alerts).where(and_(*cond)).values(acked_at=now, acked_by=by))
            for inst, seq in rows:
                self.add_event(c, model, rule, inst, seq, "acknowledged", now, None, False, {"by": by})
            return len(rows)

    # -- silences ------------------------------------------------------------------
    def add_silence(self, model: str, rule: str, instance: str | None, until: float, reason: str | None,
                    by: str | None, now: float) -> int:
        with self.engine.begin() as c:
            res = c.execute(insert(silences).values(model=model, rule=rule, instance=instance, created_at=now,
                                                    until=until, reason=reason, created_by=by))
            return int(res.inserted_primary_key[0])

    def end_silence(self, model: str, silence_id: int, now: float) -> bool:
        with self.engine.begin() as c:
            return c.execute(update(silences).where(and_(silences.c.model == model, silences.c.id == silence_id,
                                                         silences.c.until > now)).values(until=now)).rowcount == 1

    def active_silences(self, model: str, now: float, c: Connection | None = None) -> list[dict[str, Any]]:
        q = select(silences).where(and_(silences.c.model == model, silences.c.until > now)).order_by(silences.c.id)
        if c is not None:
            rows = c.execute(q).mappings().all()
        else:
            with self.reader.connect() as cc:
                rows = cc.execute(q).mappings().all()
        return [{"id": r["id"], "rule": r["rule"], "instance": r["instance"], "until": r["until"],
                 "created_at": r["created_at"], "reason": r["reason"], "created_by": r["created_by"]} for r in rows]

    # -- outbox --------------------------------------------------------------------
    def claim_outbox(self, model: str, worker: str, now: float, lease: float, limit: int = 20) -> list[OutboxRow]:
        """Take a lease on due, undelivered rows (oldest first); rows another worker holds
        under a live lease are left alone."""
        with self.reader.connect() as c:
            ids = [r[0] for r in c.execute(
                select(outbox.c.id).where(and_(
                    outbox.c.model == model, outbox.c.delivered_at.is_(None), outbox.c.failed.is_(False),
                    outbox.c.next_at <= now, or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)))
                .order_by(outbox.c.id).limit(limit))]
        if not ids:
            return []
        out = []
        with self.engine.begin() as c:
            for i in ids:
                res = c.execute(update(outbox).where(and_(
                    outbox.c.id == i, outbox.c.delivered_at.is_(None), outbox.c.failed.is_(False),
                    or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)))
                    .values(lease_until=now + lease, claimed_by=worker))
                if res.rowcount == 1:
                    r = c.execute(select(outbox.c.key, outbox.c.sink, outbox.c.payload, outbox.c.attempts)
                                  .where(outbox.c.id == i)).first()
                    out.append(OutboxRow(i, r[0], r[1], json.loads(r[2]), int(r[3])))
        return out

    def outbox_done(self, row_id: int, worker: str, now: float) -> None:
        with self.engine.begin() as c:
            c.execute(update(outbox).where(outbox.c.id == row_id).values(
                delivered_at=now, attempts=outbox.c.attempts + 1, lease_until=None, last_error=None))

    def outbox_retry(self, row_id: int, next_at: float, error: str, give_up: bool) -> None:
        with self.engine.begin() as c:
            c.execute(update(outbox).where(outbox.c.id == row_id).values(
                attempts=outbox.c.attempts + 1, next_at=next_at, lease_until=None, last_error=error[:1000],
                failed=give_up))

    def outbox_counts(self, model: str) -> dict[str, int]:
        with self.reader.connect() as c:
            rows = c.execute(select(outbox.c.delivered_at.is_(None), outbox.c.failed, func.count())
                             .where(outbox.c.model == model).group_by(outbox.c.delivered_at.is_(None),
                                                                      outbox.c.failed)).all()
        out = {"pending": 0, "delivered": 0, "failed": 0}
        for undelivered, failed, n in rows:
            out["failed" if failed else "pending" if undelivered else "delivered"] += int(n)
        return out

    def outbox_rows(self, model: str) -> list[dict[str, Any]]:
        """Every outbox row of a model, oldest first (what was queued, delivered or given up)."""
        with self.reader.connect() as c:
            rows = c.execute(select(outbox).where(outbox.c.model == model).order_by(outbox.c.id)).mappings().all()
        return [{k: r[k] for k in ("id", "key", "sink", "attempts", "delivered_at", "failed", "last_error",
                                   "claimed_by")} for r in rows]

    # -- evidence: trace ids of requests from a window --------------------------------
    def window_traces(self, c: Connection, model: str, window_id: int, n: int) -> list[str]:
        from monitoring.store import predictions as P

        rows = c.execute(select(P.c.trace_id).where(and_(P.c.model == model, P.c.window_id == window_id,
                                                         P.c.trace_id.is_not(None)))
                         .order_by(P.c.seq).limit(50 * n)).all()
        return _distinct((r[0] for r in rows), n)

    def wrong_prediction_traces(self, c: Connection, model: str, window_id: int, n: int) -> list[str]:
        """Traces of the window's labelled predictions that were most wrong (misclassified;
        largest absolute error for regressors)."""
        from monitoring.store import outcomes as O
        from monitoring.store import predictions as P

        rows = c.execute(select(P.c.trace_id, P.c.class_code, P.c.value, O.c.class_code, O.c.value)
                         .select_from(P.join(O, and_(O.c.model == P.c.model, O.c.request_id == P.c.request_id,
                                                     O.c.row_index == P.c.row_index)))
                         .where(and_(P.c.model == model, P.c.window_id == window_id, O.c.matched.is_(True),
                                     P.c.trace_id.is_not(None))).limit(20_000)).all()
        scored = []
        for trace, pc, pv, tc, tv in rows:
            if pc is not None and tc is not None:
                if pc != tc:
                    scored.append((1.0, trace))
            elif pv is not None and tv is not None:
                scored.append((abs(pv - tv), trace))
        scored.sort(key=lambda x: -x[0])
        return _distinct((t for _, t in scored), n)

    def extreme_feature_traces(self, c: Connection, model: str, window_id: int, feature: str,
                               ref: tuple[float, float], n: int) -> list[str]:
        """Traces of logged rows whose value of ``feature`` is furthest from the reference
        mean (in reference standard deviations): the rows a drift alert is about."""
        from monitoring.store import predictions as P

        mean, sd = ref
        rows = c.execute(select(P.c.trace_id, P.c.features).where(and_(
            P.c.model == model, P.c.window_id == window_id, P.c.features.is_not(None),
            P.c.trace_id.is_not(None))).limit(5000)).all()
        scored = []
        for trace, feats in rows:
            v = json.loads(feats).get(feature)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                scored.append((abs(v - mean) / (sd or 1.0), trace))
        scored.sort(key=lambda x: -x[0])
        return _distinct((t for _, t in scored), n)

    # -- references (re-baselining) ------------------------------------------------
    def adopt_reference(self, model: str, window_id: int, sketch: dict[str, Any], by: str | None,
                        now: float) -> int:
        with self.engine.begin() as c:
            for _ in range(3):
                v = int(c.execute(select(func.coalesce(func.max(references.c.version), 0))
                                  .where(references.c.model == model)).scalar()) + 1
                try:
                    with c.begin_nested():
                        c.execute(insert(references).values(model=model, version=v, window_id=window_id,
                                                            created_at=now, created_by=by, sketch=json.dumps(sketch)))
                    return v
                except IntegrityError:
                    continue
        raise RuntimeError("could not record the new reference (concurrent re-baselines)")

    def reference_version(self, model: str) -> int:
        with self.reader.connect() as c:
            return int(c.execute(select(func.coalesce(func.max(references.c.version), 0))
                                 .where(references.c.model == model)).scalar())

    def reference(self, model: str, version: int) -> tuple[int, dict[str, Any]] | None:
        with self.reader.connect() as c:
            r = c.execute(select(references.c.window_id, references.c.sketch).where(and_(
                references.c.model == model, references.c.version == version))).first()
        return None if r is None else (int(r[0]), json.loads(r[1]))

    def purge_alerts(self, model: str, before: float) -> int:
        with self.engine.begin() as c:
            n = c.execute(delete(alert_events).where(and_(alert_events.c.model == model,
                                                          alert_events.c.at < before))).rowcount
            n += c.execute(delete(outbox).where(and_(outbox.c.model == model, outbox.c.created_at < before,
                                                     or_(outbox.c.delivered_at.is_not(None),
                                                         outbox.c.failed.is_(True))))).rowcount
            return n


def _distinct(traces, n: int) -> list[str]:
    out: list[str] = []
    for t in traces:
        if t not in out:
            out.append(t)
            if len(out) == n:
                break
    return out
