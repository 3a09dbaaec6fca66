"""Alert state, alert history, the notification outbox, silences and acknowledgements
(tables ``vigil_alerts``, ``vigil_alert_events``, ``vigil_outbox``, ``vigil_silences``), and
the trace look-ups an alert's evidence cites.

Every transition is written in the same transaction as the state that caused it and the
outbox rows that announce it (:meth:`AlertStore.transaction`), so a notification is never
lost (a worker that dies after the commit leaves the rows for another) and never invented
(a rolled-back evaluation leaves none). Outbox rows have a unique idempotency key per
transition and sink; delivery takes a time-limited lease on a row, so several workers
deliver each row once in practice and at least once when a worker dies mid-delivery.

Transactions: :meth:`AlertStore.transaction` runs the alert engine's evaluation as one
transaction over the model's alert rows (locked on Postgres; SQLite's ``BEGIN IMMEDIATE``
serialises writers), and runs it again when another worker inserted the same alert or
outbox row first. Every other method is one short transaction of its own.
Failure mode: database errors surface as :class:`~monitoring.store.errors.StoreUnavailable`,
from :class:`AlertStore` and from the :class:`AlertTransaction` handle alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from monitoring.alerts import AlertState
from monitoring.store.errors import StoreUnavailable, guarded
from monitoring.store.tables import alert_events, alerts, outbox, outcomes, predictions, silences
from monitoring.values import finite_or_none

T = TypeVar("T")


@dataclass(frozen=True)
class StoredAlert:
    """One alert row: its state machine's state and what was announced and acknowledged."""

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
    """A notification leased for delivery (``key`` is its idempotency key)."""

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


class _RowTaken(Exception):
    """Another worker inserted the same alert or outbox row first: the evaluation must
    re-read the rows and run again (raised by the handle, caught by the transaction)."""


@guarded
class AlertTransaction:
    """The handle :meth:`AlertStore.transaction` gives the alert engine: every read and
    write of one model's alert evaluation, inside one transaction. Use it only inside the
    function it was given to."""

    def __init__(self, conn: Connection, model: str):
        self._c = conn
        self.model = model

    def lock(self) -> dict[tuple[str, str], StoredAlert]:
        """Every alert row of the model by (rule, instance), locked until the commit on
        Postgres (SQLite's BEGIN IMMEDIATE already serialises writers)."""
        q = select(alerts).where(alerts.c.model == self.model)
        if self._c.dialect.name == "postgresql":
            q = q.with_for_update()
        return {(r["rule"], r["instance"]): _row_to_alert(r) for r in self._c.execute(q).mappings()}

    def silences(self, now: float) -> list[dict[str, Any]]:
        """The model's silences in force at ``now``."""
        return _silences(self._c, self.model, now)

    def save(self, rule: str, instance: str, st: AlertState, severity: str, now: float, *, exists: bool,
             evidence: dict | None = None, data: dict | None = None, notified_state: str | None | bool = False,
             notified_at: float | None = None, clear_ack: bool = False, repeats: int | None = None) -> None:
        """Write an alert's state (``exists``: as read by :meth:`lock`). ``notified_state``
        False leaves the notification columns alone; otherwise they are set and the repeat
        count restarts at ``repeats`` (0 by default)."""
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
        if repeats is not None:
            vals["repeats"] = repeats
        if clear_ack:
            vals["acked_at"] = None
            vals["acked_by"] = None
        if exists:
            self._c.execute(update(alerts).where(and_(alerts.c.model == self.model, alerts.c.rule == rule,
                                                      alerts.c.instance == instance)).values(**vals))
            return
        try:
            self._c.execute(insert(alerts).values(model=self.model, rule=rule, instance=instance, **vals))
        except IntegrityError as exc:
            raise _RowTaken() from exc

    def add_event(self, rule: str, instance: str, seq: int, state: str, at: float, window_id: int | None,
                  notified: bool, payload: dict[str, Any]) -> None:
        """Append to the alert history."""
        _add_event(self._c, self.model, rule, instance, seq, state, at, window_id, notified, payload)

    def enqueue(self, key: str, sinks: Iterable[str], payload: dict[str, Any], now: float) -> int:
        """Outbox rows for one notification, one per sink; a key already queued is skipped.
        Returns rows queued."""
        n = 0
        body = json.dumps(payload)
        for sink in sinks:
            k = f"{key}#{sink}"
            if self._c.execute(select(outbox.c.id).where(outbox.c.key == k)).first() is not None:
                continue
            try:
                self._c.execute(insert(outbox).values(model=self.model, key=k, sink=sink, created_at=now,
                                                      payload=body, attempts=0, next_at=now, failed=False))
            except IntegrityError as exc:  # queued by another worker since the check
                raise _RowTaken() from exc
            n += 1
        return n

    # -- evidence: trace ids of requests from a window --------------------------------
    def window_traces(self, window_id: int, n: int) -> list[str]:
        """Up to ``n`` distinct trace ids of the window's requests, oldest first."""
        P = predictions
        rows = self._c.execute(select(P.c.trace_id).where(and_(
            P.c.model == self.model, P.c.window_id == window_id, P.c.trace_id.is_not(None)))
            .order_by(P.c.seq).limit(50 * n)).all()
        return _distinct((r[0] for r in rows), n)

    def wrong_prediction_traces(self, window_id: int, n: int) -> list[str]:
        """Traces of the window's labelled predictions that were most wrong (misclassified;
        largest absolute error for regressors)."""
        P, O = predictions, outcomes
        rows = self._c.execute(select(P.c.trace_id, P.c.class_code, P.c.value, O.c.class_code, O.c.value)
                               .select_from(P.join(O, and_(O.c.model == P.c.model, O.c.request_id == P.c.request_id,
                                                           O.c.row_index == P.c.row_index)))
                               .where(and_(P.c.model == self.model, P.c.window_id == window_id,
                                           O.c.matched.is_(True), P.c.trace_id.is_not(None))).limit(20_000)).all()
        scored = []
        for trace, pc, pv, tc, tv in rows:
            if pc is not None and tc is not None:
                if pc != tc:
                    scored.append((1.0, trace))
            elif pv is not None and tv is not None:
                scored.append((abs(pv - tv), trace))
        scored.sort(key=lambda x: -x[0])
        return _distinct((t for _, t in scored), n)

    def extreme_feature_traces(self, window_id: int, feature: str, ref: tuple[float, float], n: int) -> list[str]:
        """Traces of logged rows whose value of ``feature`` is furthest from the reference
        mean (in reference standard deviations): the rows a drift alert is about."""
        P = predictions
        mean, sd = ref
        rows = self._c.execute(select(P.c.trace_id, P.c.features).where(and_(
            P.c.model == self.model, P.c.window_id == window_id, P.c.features.is_not(None),
            P.c.trace_id.is_not(None))).limit(5000)).all()
        scored = []
        for trace, feats in rows:
            v = json.loads(feats).get(feature)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                scored.append((abs(v - mean) / (sd or 1.0), trace))
        scored.sort(key=lambda x: -x[0])
        return _distinct((t for _, t in scored), n)


@guarded
class AlertStore:
    """``store.alerts``: the evaluation transaction, views, silences, acknowledgements and
    the outbox."""

    def __init__(self, engine: Engine, reader: Engine):
        self._engine = engine
        self._reader = reader

    def transaction(self, model: str, fn: Callable[[AlertTransaction], T], attempts: int = 3) -> T:
        """Run ``fn(tx)`` in one transaction over ``model``'s alert rows and commit; returns
        what ``fn`` returns. When another worker inserted the same alert or outbox row first,
        everything is rolled back and ``fn`` runs again on a fresh handle (it must re-read
        with ``tx.lock()``), up to ``attempts`` times; then StoreUnavailable (try later)."""
        for attempt in range(attempts):
            try:
                with self._engine.begin() as c:
                    return fn(AlertTransaction(c, model))
            except _RowTaken as race:
                if attempt == attempts - 1:
                    raise StoreUnavailable.from_error(race.__cause__) from race.__cause__
        raise ValueError(f"attempts must be >= 1; got {attempts}")

    # -- views -----------------------------------------------------------------------
    def all(self, model: str) -> list[StoredAlert]:
        """Every alert row of the model (any state), by rule and instance."""
        with self._reader.connect() as c:
            rows = c.execute(select(alerts).where(alerts.c.model == model)
                             .order_by(alerts.c.rule, alerts.c.instance)).mappings().all()
        return [_row_to_alert(r) for r in rows]

    def events(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        """The alert history, newest first."""
        with self._reader.connect() as c:
            rows = c.execute(select(alert_events).where(alert_events.c.model == model)
                             .order_by(alert_events.c.id.desc()).limit(limit)).mappings().all()
        return [{"id": r["id"], "rule": r["rule"], "instance": r["instance"] or None, "seq": r["seq"],
                 "state": r["state"], "at": r["at"], "window_id": r["window_id"], "notified": bool(r["notified"]),
                 **json.loads(r["payload"])} for r in rows]

    def acknowledge(self, model: str, rule: str, instance: str | None, by: str | None, now: float) -> int:
        """Acknowledge firing alerts of a rule (one instance, or all). Returns how many."""
        with self._engine.begin() as c:
            cond = [alerts.c.model == model, alerts.c.rule == rule, alerts.c.state == "firing"]
            if instance is not None:
                cond.append(alerts.c.instance == instance)
            rows = c.execute(select(alerts.c.instance, alerts.c.seq).where(and_(*cond))).all()
            c.execute(update(alerts).where(and_(*cond)).values(acked_at=now, acked_by=by))
            for inst, seq in rows:
                _add_event(c, model, rule, inst, seq, "acknowledged", now, None, False, {"by": by})
            return len(rows)

    # -- silences ------------------------------------------------------------------
    def add_silence(self, model: str, rule: str, instance: str | None, until: float, reason: str | None,
                    by: str | None, now: float) -> int:
        """Silence a rule (``"*"``: every rule), one instance or all, until ``until``; returns its id."""
        with self._engine.begin() as c:
            res = c.execute(insert(silences).values(model=model, rule=rule, instance=instance, created_at=now,
                                                    until=until, reason=reason, created_by=by))
            return int(res.inserted_primary_key[0])

    def end_silence(self, model: str, silence_id: int, now: float) -> bool:
        """End a silence now; False if there is no such silence in force."""
        with self._engine.begin() as c:
            return c.execute(update(silences).where(and_(silences.c.model == model, silences.c.id == silence_id,
                                                         silences.c.until > now)).values(until=now)).rowcount == 1

    def active_silences(self, model: str, now: float) -> list[dict[str, Any]]:
        with self._reader.connect() as c:
            return _silences(c, model, now)

    # -- outbox --------------------------------------------------------------------
    def claim_outbox(self, model: str, worker: str, now: float, lease: float, limit: int = 20) -> list[OutboxRow]:
        """Take a lease on due, undelivered rows (oldest first); rows another worker holds
        under a live lease are left alone."""
        with self._reader.connect() as c:
            ids = [r[0] for r in c.execute(
                select(outbox.c.id).where(and_(
                    outbox.c.model == model, outbox.c.delivered_at.is_(None), outbox.c.failed.is_(False),
                    outbox.c.next_at <= now, or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)))
                .order_by(outbox.c.id).limit(limit))]
        if not ids:
            return []
        out = []
        with self._engine.begin() as c:
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
        """Record a leased row as delivered."""
        with self._engine.begin() as c:
            c.execute(update(outbox).where(outbox.c.id == row_id).values(
                delivered_at=now, attempts=outbox.c.attempts + 1, lease_until=None, last_error=None))

    def outbox_retry(self, row_id: int, next_at: float, error: str, give_up: bool) -> None:
        """Record a failed attempt: due again at ``next_at``, or failed for good (``give_up``)."""
        with self._engine.begin() as c:
            c.execute(update(outbox).where(outbox.c.id == row_id).values(
                attempts=outbox.c.attempts + 1, next_at=next_at, lease_until=None, last_error=error[:1000],
                failed=give_up))

    def outbox_counts(self, model: str) -> dict[str, int]:
        with self._reader.connect() as c:
            rows = c.execute(select(outbox.c.delivered_at.is_(None), outbox.c.failed, func.count())
                             .where(outbox.c.model == model).group_by(outbox.c.delivered_at.is_(None),
                                                                      outbox.c.failed)).all()
        out = {"pending": 0, "delivered": 0, "failed": 0}
        for undelivered, failed, n in rows:
            out["failed" if failed else "pending" if undelivered else "delivered"] += int(n)
        return out

    def outbox_rows(self, model: str) -> list[dict[str, Any]]:
        """Every outbox row of a model, oldest first (what was queued, delivered or given up)."""
        with self._reader.connect() as c:
            rows = c.execute(select(outbox).where(outbox.c.model == model).order_by(outbox.c.id)).mappings().all()
        return [{k: r[k] for k in ("id", "key", "sink", "attempts", "delivered_at", "failed", "last_error",
                                   "claimed_by")} for r in rows]

    def purge(self, model: str, before: float) -> dict[str, int]:
        """Retention: delete alert history older than ``before`` and notifications created
        before it that were delivered or given up (undelivered ones stay: they are owed).
        Alert state rows are not history and stay."""
        with self._engine.begin() as c:
            n = c.execute(delete(alert_events).where(and_(alert_events.c.model == model,
                                                          alert_events.c.at < before))).rowcount
            n += c.execute(delete(outbox).where(and_(outbox.c.model == model, outbox.c.created_at < before,
                                                     or_(outbox.c.delivered_at.is_not(None),
                                                         outbox.c.failed.is_(True))))).rowcount
        return {"alert_history": n}


def _silences(c: Connection, model: str, now: float) -> list[dict[str, Any]]:
    q = select(silences).where(and_(silences.c.model == model, silences.c.until > now)).order_by(silences.c.id)
    return [{"id": r["id"], "rule": r["rule"], "instance": r["instance"], "until": r["until"],
             "created_at": r["created_at"], "reason": r["reason"], "created_by": r["created_by"]}
            for r in c.execute(q).mappings().all()]


def _add_event(c: Connection, model: str, rule: str, instance: str, seq: int, state: str, at: float,
               window_id: int | None, notified: bool, payload: dict[str, Any]) -> None:
    c.execute(insert(alert_events).values(model=model, rule=rule, instance=instance, seq=seq, state=state, at=at,
                                          window_id=window_id, notified=notified, payload=json.dumps(payload)))


def _distinct(traces, n: int) -> list[str]:
    out: list[str] = []
    for t in traces:
        if t not in out:
            out.append(t)
            if len(out) == n:
                break
    return out
