"""The alert state machine: ``inactive -> pending -> firing -> resolved`` per (model, rule,
instance). :func:`step` is a pure transition function; the runtime's alert engine runs it
for every closed window and keeps the state in the store."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from monitoring.alerts.rules import RuleSpec

State = Literal["inactive", "pending", "firing", "resolved"]

# -- state machine -------------------------------------------------------------------

@dataclass(frozen=True)
class AlertState:
    state: State = "inactive"
    bad: int = 0                      # consecutive abnormal windows
    good: int = 0                     # consecutive normal windows while firing
    pending_since: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    last_window: int = -1
    seq: int = 0                      # transitions to firing/resolved so far
    value: float | None = None


@dataclass(frozen=True)
class Transition:
    to: Literal["firing", "resolved"]
    seq: int


def step(rule: RuleSpec, st: AlertState, abnormal: bool | None, window_id: int, window_start: float,
         window_end: float, now: float, value: float | None = None) -> tuple[AlertState, Transition | None]:
    """Advance one alert by one window. Windows at or before ``last_window`` are ignored
    (each window counts once, whichever worker reports it)."""
    if window_id <= st.last_window:
        return st, None
    st = replace(st, last_window=window_id, value=value if value is not None else st.value)
    if abnormal is None:
        return st, None
    if abnormal:
        st = replace(st, bad=st.bad + 1, good=0)
        if st.state in ("inactive", "resolved"):
            st = replace(st, state="pending", pending_since=window_start)
        if st.state == "pending":
            long_enough = window_end - (st.pending_since if st.pending_since is not None else window_start) \
                >= rule.for_seconds
            cooled = st.fired_at is None or now - st.fired_at >= rule.cooldown_seconds
            if st.bad >= rule.for_windows and long_enough and cooled:
                st = replace(st, state="firing", fired_at=now, seq=st.seq + 1)
                return st, Transition("firing", st.seq)
        return st, None
    st = replace(st, bad=0)
    if st.state == "pending":
        return replace(st, state="inactive", pending_since=None, good=0), None
    if st.state == "firing":
        st = replace(st, good=st.good + 1)
        if st.good >= rule.resolve_windows:
            st = replace(st, state="resolved", resolved_at=now, good=0, pending_since=None, seq=st.seq + 1)
            return st, Transition("resolved", st.seq)
    return st, None


