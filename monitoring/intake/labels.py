"""How an outcome meets its prediction: the rules, without SQL.

The store looks things up (the outcomes already stored under the posted keys, the
predictions those keys name, the labels those predictions already have) and hands them
here; :func:`plan_ingest` and :func:`plan_join` decide, and the store writes what they say.

The rules:

- **One label per prediction.** A prediction answers to three keys: ``request_id`` +
  ``index``, the caller's ``client_request_id`` + ``index`` and its ``instance_id``. Every
  key of one prediction names the same prediction: a second outcome for it, under any
  key, is a duplicate when it agrees and a conflict (409) when it does not.
- **A caller id names the first prediction logged with it** (lowest row number). A later
  prediction that reuses the id is served and monitored as usual but can be labelled only
  by its ``request_id``. Caller ids are kept only from callers that could also label them
  (the service decides: with a token, only requests that presented it).
- **Early labels are provisional.** An outcome received before its prediction was made
  (possible only under a caller id, and only stored when the caller asked for it) is
  replaced by a later outcome for that prediction instead of refusing it, so that a label
  posted ahead of time (by mistake, or by someone locking it in) can always be corrected.
- **Unknown keys are reported, not kept**, unless the caller insists (``early``): a
  ``request_id`` Vigil never issued, an ``index`` beyond the request's rows, a caller id no
  prediction carries yet. An id Vigil issued whose prediction is not logged yet (the
  monitor writes the log in the background) is kept as pending and joined when it is.
- Joining waiting outcomes (when their prediction is logged): the earliest received wins
  the prediction; a waiting one that agrees with the label is redundant, one that
  contradicts it stops waiting as a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from monitoring.intake.outcomes import OutcomeIn, RequestIds

#: A prediction's identity: (request_id, row_index).
PredKey = tuple[str, int]


@dataclass(frozen=True)
class Prediction:
    request_id: str
    row_index: int
    window_id: int
    seq: int
    predicted_at: float

    @property
    def key(self) -> PredKey:
        return (self.request_id, self.row_index)


@dataclass(frozen=True)
class StoredOutcome:
    """An outcome row. ``prediction``: the prediction it is matched to (None while waiting)."""

    okey: str
    class_code: int | None
    value: float | None
    received_at: float
    matched: bool
    expired: bool
    prediction: PredKey | None = None


@dataclass(frozen=True)
class Lookup:
    """What the store found for a batch. ``hits``: okey -> the prediction its key names;
    ``sizes``: okey -> rows of the request its key names, when that request is logged but
    has no such row; ``predictions``: every prediction mentioned; ``labels``: the matched
    outcome of a prediction; ``stored``: outcomes already stored under the posted keys."""

    hits: Mapping[str, PredKey] = field(default_factory=dict)
    sizes: Mapping[str, int] = field(default_factory=dict)
    predictions: Mapping[PredKey, Prediction] = field(default_factory=dict)
    labels: Mapping[PredKey, StoredOutcome] = field(default_factory=dict)
    stored: Mapping[str, StoredOutcome] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestPlan:
    """What to write for a batch. ``insert``: (outcome, the prediction it is matched to or
    None: pending); ``replace``: okeys of provisional outcomes to delete first;
    ``unknown`` and ``conflicts``: (position in the batch, message)."""

    insert: tuple[tuple[OutcomeIn, Prediction | None], ...]
    replace: tuple[str, ...]
    duplicate: int
    unknown: tuple[tuple[int, str], ...]
    conflicts: tuple[tuple[int, str], ...]

    @property
    def pending(self) -> int:
        return sum(1 for _, p in self.insert if p is None)


def same_label(a_code: Any, a_val: Any, b_code: Any, b_val: Any) -> bool:
    if a_code is not None or b_code is not None:
        return a_code == b_code
    return a_val == b_val


def _unknown_reason(it: OutcomeIn, size: int | None) -> str | None:
    """Why an outcome that names no logged prediction is not kept (None: keep it pending)."""
    key = f"{it.key_name} {it.key_id[:80]!r}"
    if size is not None:
        return f"index {it.row_index} is beyond the {size} row(s) of the request with {key}"
    if it.okey[0] == "r" and it.issued_rows is not None:
        if it.issued_rows == RequestIds.MAX_ROWS or it.row_index < it.issued_rows:
            return None  # ours, not logged yet: the monitor writes the log in the background
        return f"index {it.row_index} is beyond the {it.issued_rows} row(s) of the request with {key}"
    if it.early:
        return None
    if it.okey[0] == "r":
        return (f"{key} was never issued by this service (a typo?); "
                "send allow_early to keep it anyway")
    return f"no prediction carries {key} yet; send allow_early to keep it until one does"


def plan_ingest(items: Sequence[OutcomeIn], found: Lookup) -> IngestPlan:
    """Decide a batch: each item is new (matched or pending), a duplicate, unknown, a
    conflict, or replaces a provisional label."""
    insert: list[tuple[OutcomeIn, Prediction | None]] = []
    replace: list[str] = []
    unknown: list[tuple[int, str]] = []
    conflicts: list[tuple[int, str]] = []
    dup = 0
    by_key: dict[str, int] = {}
    claimed: dict[PredKey, int] = {}  # prediction -> position of the item of this batch labelling it

    def label_of(pos: int, it: OutcomeIn, p: Prediction, held: StoredOutcome | None) -> None:
        nonlocal dup
        if p.key in claimed:
            other = items[claimed[p.key]]
            if same_label(other.class_code, other.value, it.class_code, it.value):
                dup += 1
            else:
                conflicts.append((pos, f"labels the same prediction as item {claimed[p.key]} differently"))
            return
        if held is not None and same_label(held.class_code, held.value, it.class_code, it.value):
            dup += 1
            return
        if held is not None and not held.received_at < p.predicted_at:
            conflicts.append((pos, "contradicts the outcome already stored for this prediction"
                                   + ("" if held.okey == it.okey else f" (under {held.okey[0]}-key)")))
            return
        if held is not None:  # provisional (posted before the prediction was made): replaced
            replace.append(held.okey)
        claimed[p.key] = pos
        insert.append((it, p))

    for pos, it in enumerate(items):
        if it.okey in by_key:
            prev = items[by_key[it.okey]]
            if same_label(prev.class_code, prev.value, it.class_code, it.value):
                dup += 1
            else:
                conflicts.append((pos, f"contradicts item {by_key[it.okey]} of this batch"))
            continue
        by_key[it.okey] = pos
        stored = found.stored.get(it.okey)
        if stored is not None and stored.prediction is not None:
            pkey = stored.prediction
            label_of(pos, it, found.predictions[pkey], found.labels.get(pkey, stored))
            continue
        if stored is not None:  # waiting (or expired) under this very key
            if same_label(stored.class_code, stored.value, it.class_code, it.value):
                dup += 1
            else:
                conflicts.append((pos, "contradicts the outcome already stored under this key "
                                       "(waiting for its prediction)"))
            continue
        pkey = found.hits.get(it.okey)
        if pkey is not None:
            label_of(pos, it, found.predictions[pkey], found.labels.get(pkey))
            continue
        why = _unknown_reason(it, found.sizes.get(it.okey))
        if why is None:
            insert.append((it, None))
        else:
            unknown.append((pos, why))
    return IngestPlan(tuple(insert), tuple(replace), dup, tuple(unknown), tuple(conflicts))


@dataclass(frozen=True)
class JoinPlan:
    """What joining waiting outcomes does: ``matched`` (okey, prediction), ``redundant``
    okeys (agree with the label the prediction already has: deleted), ``conflicting`` okeys
    (contradict it: stop waiting, counted)."""

    matched: tuple[tuple[str, Prediction], ...]
    redundant: tuple[str, ...]
    conflicting: tuple[str, ...]


def plan_join(waiting: Iterable[StoredOutcome], found: Lookup) -> JoinPlan:
    """Join waiting outcomes whose prediction is now logged, earliest received first."""
    labels: dict[PredKey, StoredOutcome] = dict(found.labels)
    matched, redundant, conflicting = [], [], []
    for w in sorted(waiting, key=lambda w: (w.received_at, w.okey)):
        pkey = found.hits.get(w.okey)
        if pkey is None:
            continue
        held = labels.get(pkey)
        if held is None:
            labels[pkey] = w
            matched.append((w.okey, found.predictions[pkey]))
        elif same_label(held.class_code, held.value, w.class_code, w.value):
            redundant.append(w.okey)
        else:
            conflicting.append(w.okey)
    return JoinPlan(tuple(matched), tuple(redundant), tuple(conflicting))
