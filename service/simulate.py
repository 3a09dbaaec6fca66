"""``vigil simulate``: drive a served model with realistic traffic and delayed feedback.

Rows are resampled from the model's own validation data (``GET /monitoring/sample``, or a
file given with ``--data``), changed as the scenario says at each moment
(:mod:`service.scenarios`), posted to ``/predict``; their true outcomes (changed too, where
the scenario flips them) are posted to ``/feedback`` after ``feedback_delay`` seconds.

Bounds: a run stops after ``duration`` seconds or ``max_requests`` prediction requests,
whichever comes first (both capped), then waits at most ``feedback_delay`` + 10 s for the
outcomes still due. It only ever talks to the one base URL it is given (no redirects are
followed). Failures of single requests are counted, not raised; a server that cannot be
reached at all, or refuses the sample, ends the run with :class:`SimulationError`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

from .scenarios import SCENARIOS, Knobs, Moment, moment

MAX_DURATION = 3600.0
MAX_REQUESTS = 100_000
MAX_RATE = 500.0
MAX_BATCH = 1000
#: Concurrent large requests per outage tick (the latency spike), and their size.
BURST, BURST_ROWS = 8, 200


class SimulationError(RuntimeError):
    """The run cannot start or go on (server unreachable, sample refused, bad data)."""


@dataclass(frozen=True)
class Plan:
    """One run: ``scenario`` against ``url`` for at most ``duration`` seconds and
    ``max_requests`` requests of ``batch`` rows at ``rate`` requests a second; outcomes of a
    ``label_share`` of rows posted ``feedback_delay`` seconds later; ``drifted`` features
    (None: the first two numeric ones); ``seed`` makes the rows and flips reproducible."""

    url: str
    scenario: str
    duration: float = 120.0
    max_requests: int = 5000
    rate: float = 20.0
    batch: int = 10
    feedback_delay: float = 5.0
    label_share: float = 1.0
    drifted: tuple[str, ...] | None = None
    knobs: Knobs = field(default_factory=Knobs)
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"url must start with http:// or https://; got {self.url!r}")
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {', '.join(SCENARIOS)}; got {self.scenario!r}")
        if not 0 < self.duration <= MAX_DURATION:
            problems.append(f"duration must be in (0, {MAX_DURATION:g}] seconds; got {self.duration}")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            problems.append(f"requests must be in [1, {MAX_REQUESTS}]; got {self.max_requests}")
        if not 0 < self.rate <= MAX_RATE:
            problems.append(f"rate must be in (0, {MAX_RATE:g}] requests/s; got {self.rate}")
        if not 1 <= self.batch <= MAX_BATCH:
            problems.append(f"batch must be in [1, {MAX_BATCH}] rows; got {self.batch}")
        if not 0 <= self.feedback_delay <= 600:
            problems.append(f"feedback delay must be in [0, 600] seconds; got {self.feedback_delay}")
        if not 0 <= self.label_share <= 1:
            problems.append(f"label share must be in [0, 1]; got {self.label_share}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Sample:
    """Labelled rows to resample: feature dicts as ``/predict`` takes them and outcomes."""

    rows: list[dict[str, Any]]
    outcomes: list[Any]
    task: str
    classes: list[Any]
    numeric: list[str]
    categorical: list[str]

    def __post_init__(self) -> None:
        if not self.rows or len(self.rows) != len(self.outcomes):
            raise SimulationError("the sample has no rows (or rows and outcomes differ in number)")
        self.sd = {}
        for name in self.numeric:
            vals = np.array([r[name] for r in self.rows if isinstance(r.get(name), (int, float))], dtype=float)
            self.sd[name] = float(vals.std()) if vals.size > 1 and vals.std() > 0 else 1.0
        self.rare = {}
        for name in self.categorical:
            counts = Counter(r[name] for r in self.rows if r.get(name) is not None)
            self.rare[name] = min(counts, key=counts.get) if counts else None
        y = np.array([v for v in self.outcomes if isinstance(v, (int, float))], dtype=float)
        self.outcome_sd = float(y.std()) if y.size > 1 else 1.0

    @classmethod
    def from_view(cls, body: dict[str, Any]) -> "Sample":
        kinds = dict(zip(body["features"], body["kinds"]))
        return cls(body["rows"], body["outcomes"], body["task"], body.get("classes") or [],
                   [n for n, k in kinds.items() if k == "numeric"], [n for n, k in kinds.items() if k != "numeric"])

    @classmethod
    def from_file(cls, path: Path, target: str, limit: int = 10_000, seed: int = 0) -> "Sample":
        import pandas as pd

        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
        if target not in frame.columns:
            raise SimulationError(f"{path}: no column {target!r}")
        if len(frame) > limit:
            frame = frame.sample(limit, random_state=seed)
        feats = frame.drop(columns=[target])
        numeric = [c for c in feats.columns if feats[c].dtype.kind in "fiu"]
        rows = json.loads(feats.to_json(orient="records"))  # NaN -> null, numpy -> JSON types
        outcomes = json.loads(frame[target].to_json(orient="values"))
        classifier = frame[target].dtype.kind not in "f"
        return cls(rows, outcomes, "classification" if classifier else "regression",
                   sorted(set(outcomes), key=str) if classifier else [], numeric,
                   [c for c in feats.columns if c not in numeric])


@dataclass
class Tally:
    """What a run did so far (what the progress bar shows)."""

    requests: int = 0
    rows: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    failed: int = 0
    outcomes_posted: int = 0
    outcomes_waiting: int = 0
    feedback_errors: int = 0
    phase: str = "steady"
    shift: float = 0.0
    flip: float = 0.0
    progress: float = 0.0
    statuses: Counter = field(default_factory=Counter)


class Simulator:
    """Runs a :class:`Plan` with an ``httpx.Client`` whose base URL is the plan's URL.
    ``on_progress(tally)`` is called after every tick; ``record`` (a callable taking a
    dict) receives one line per ``/predict`` request (time, phase, status, ids)."""

    def __init__(self, plan: Plan, client: httpx.Client, sample: Sample, *,
                 on_progress: Callable[[Tally], None] | None = None, record: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.plan = plan
        self.client = client
        self.sample = sample
        self.rng = np.random.default_rng(plan.seed)
        self.drifted = list(plan.drifted) if plan.drifted is not None else sample.numeric[:2]
        unknown = [f for f in self.drifted if f not in sample.numeric and f not in sample.categorical]
        if unknown:
            raise SimulationError(f"unknown feature(s) to drift: {', '.join(unknown)}")
        self.on_progress = on_progress or (lambda t: None)
        self.record = record
        self.clock = clock
        self.tally = Tally()
        self._due: deque = deque()  # (due time, outcome item), in due order
        self._lock = threading.Lock()
        self.max_rows: int | None = None  # the server's batch limit, read when an outage needs it

    # -- rows and outcomes --------------------------------------------------------------------
    def _rows(self, n: int, m: Moment) -> tuple[list[dict], list[tuple[int, Any]]]:
        """``n`` rows as the moment has them, and the (index, outcome) pairs to post later
        (a ``label_share`` of them). Main thread only: the generator is not thread-safe."""
        s = self.sample
        idx = self.rng.integers(0, len(s.rows), size=n)
        rows, outcomes = [dict(s.rows[i]) for i in idx], [s.outcomes[i] for i in idx]
        if m.shift:
            for name in self.drifted:
                if name in s.sd:
                    for r in rows:
                        if isinstance(r.get(name), (int, float)):
                            r[name] = r[name] + m.shift * s.sd[name]
                elif s.rare.get(name) is not None:  # categorical: the rarest category takes over
                    take = self.rng.random(n) < min(1.0, abs(m.shift) / 3)
                    for r, t in zip(rows, take):
                        if t:
                            r[name] = s.rare[name]
        if m.flip:
            flips = self.rng.random(n) < m.flip
            for i in np.flatnonzero(flips):
                outcomes[i] = self._flipped(outcomes[i])
        keep = self.rng.random(n) < self.plan.label_share
        return rows, [(int(i), outcomes[i]) for i in np.flatnonzero(keep)]

    def _flipped(self, y: Any) -> Any:
        s = self.sample
        if s.task == "classification":
            others = [c for c in s.classes if c != y]
            return others[int(self.rng.integers(0, len(others)))] if others else y
        return y + 2.0 * s.outcome_sd if isinstance(y, (int, float)) else y

    # -- one request ------------------------------------------------------------------------------
    def _predict(self, rows: list[dict], labelled: list[tuple[int, Any]] | None, phase: str, now: float) -> None:
        """Post one request (any thread); its outcomes become due ``feedback_delay`` later."""
        try:
            r = self.client.post("/predict", json={"instances": rows})
        except httpx.HTTPError as exc:
            with self._lock:
                self.tally.failed += 1
                self.tally.statuses[type(exc).__name__] += 1
            return
        body = _json(r)
        with self._lock:
            self._count(r, rows, body, labelled, now)
        if self.record is not None:
            self.record({"at": time.time(), "phase": phase, "status": r.status_code, "rows": len(rows),
                         "request_id": body.get("request_id"),
                         "trace_id": (r.headers.get("traceparent") or "--").split("-")[1] or None})

    def _count(self, r: httpx.Response, rows: list, body: dict, labelled, now: float) -> None:
        t = self.tally
        t.requests += 1
        t.statuses[r.status_code] += 1
        if r.status_code < 300:
            t.ok += 1
            t.rows += len(rows)
        elif r.status_code < 500:
            t.client_errors += 1
        else:
            t.server_errors += 1
        if r.status_code < 300 and labelled and "request_id" in body:
            due = now + self.plan.feedback_delay
            self._due.extend((due, {"request_id": body["request_id"], "index": i, "outcome": y}) for i, y in labelled)

    def _feedback(self, now: float) -> None:
        """Post the outcomes that are due, 500 at a time (re-sending is safe: a failed post
        is tried again a second later)."""
        items = []
        while self._due and self._due[0][0] <= now and len(items) < 500:
            items.append(self._due.popleft()[1])
        if not items:
            return
        try:
            r = self.client.post("/feedback", json={"outcomes": items})
            status = r.status_code
        except httpx.HTTPError:
            status = 0
        if 200 <= status < 300:
            self.tally.outcomes_posted += len(items)
        elif status == 0 or status >= 500 or status == 429:  # safe to re-send: try again later
            self._due.extendleft((now + 1.0, it) for it in reversed(items))
            self.tally.feedback_errors += 1
        else:
            self.tally.feedback_errors += 1

    # -- the outage's extra traffic -------------------------------------------------------------------
    def _outage(self, pool: ThreadPoolExecutor, tick: int, m: Moment, now: float) -> None:
        rows, _ = self._rows(1, m)
        bad = dict(rows[0])
        first = (self.sample.numeric or self.sample.categorical)[0]
        bad[first] = "not a number" if first in self.sample.numeric else 12345
        self._predict([bad], None, m.phase, now)                          # 422: wrong type
        if tick % 5 == 0:
            if self.max_rows is None:
                self.max_rows = max_batch_rows(self.client)
            big, _ = self._rows(min(self.max_rows + 1, MAX_BATCH + 1), m)
            self._predict(big, None, m.phase, now)                        # 413: too many rows
        batches = [self._rows(BURST_ROWS, m) for _ in range(BURST)]       # a burst: the latency spike
        list(pool.map(lambda b: self._predict(b[0], b[1], m.phase, now), batches))

    # -- the run ------------------------------------------------------------------------------------------
    def run(self) -> Tally:
        plan, t = self.plan, self.tally
        start = self.clock()
        interval = 1.0 / plan.rate
        tick = 0
        with ThreadPoolExecutor(max_workers=BURST, thread_name_prefix="vigil-simulate") as pool:
            while True:
                now = self.clock()
                t.progress = max((now - start) / plan.duration, t.requests / plan.max_requests)
                if t.progress >= 1.0:
                    break
                m = moment(plan.scenario, t.progress, plan.knobs)
                t.phase, t.shift, t.flip = m.phase, m.shift, m.flip
                rows, labelled = self._rows(plan.batch, m)
                self._predict(rows, labelled, m.phase, now)
                if m.outage:
                    self._outage(pool, tick, m, now)
                self._feedback(now)
                t.outcomes_waiting = len(self._due)
                self.on_progress(t)
                tick += 1
                pause = start + tick * interval - self.clock()
                if pause > 0:
                    time.sleep(pause)
        t.progress = 1.0
        deadline = self.clock() + plan.feedback_delay + 10.0
        while self._due and self.clock() < deadline:
            now = self.clock()
            self._feedback(now)
            t.outcomes_waiting = len(self._due)
            self.on_progress(t)
            if self._due and self._due[0][0] > now:
                time.sleep(min(0.2, self._due[0][0] - now))
        return t


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def fetch_sample(client: httpx.Client, seed: int = 0, limit: int = 1000) -> Sample:
    """Labelled rows from the server's ``/monitoring/sample`` view."""
    try:
        r = client.get("/monitoring/sample", params={"limit": limit, "seed": seed})
    except httpx.HTTPError as exc:
        raise SimulationError(f"cannot reach {client.base_url}: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise SimulationError(f"GET /monitoring/sample: HTTP {r.status_code}: {_json(r).get('error', r.text[:200])}"
                              + (" (pass --token or set VIGIL_API_TOKEN)" if r.status_code == 401 else ""))
    return Sample.from_view(r.json())


def max_batch_rows(client: httpx.Client) -> int:
    """The server's ``/predict`` batch limit, read from its OpenAPI spec (default 1000)."""
    try:
        spec = client.get("/docs.json").json()
        schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        found = _find(schema, "maxItems")
        return int(found) if found is not None else 1000
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return 1000


def _find(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for v in node.values():
            got = _find(v, key)
            if got is not None:
                return got
    elif isinstance(node, list):
        for v in node:
            got = _find(v, key)
            if got is not None:
                return got
    return None


def describe(t: Tally) -> str:
    """One line for the progress bar."""
    parts = [f"{t.rows:,} rows", f"4xx {t.client_errors}", f"5xx {t.server_errors}"]
    if t.failed:
        parts.append(f"unreachable {t.failed}")
    parts.append(f"outcomes {t.outcomes_posted:,} posted, {t.outcomes_waiting:,} due later")
    if t.shift:
        parts.append(f"shift {t.shift:.2g} sd")
    if t.flip:
        parts.append(f"{100 * t.flip:.0f}% outcomes changed")
    return " · ".join(parts)
