"""A worker's cache of evaluated windows, condensed for the dashboard's views.

A window's report never changes once stored, and reading 500 of them back costs a quarter
of a second at 50 features (about 17 KB of JSON each, parsed in full by the store). The
views read :class:`WindowRow` objects from here instead: per feature one row of floats
(statistic, p-values, effect, score, flag, quality rates), the serving figures and the
prediction summary, about 5 KB a window.

Digests: the evaluator stores each window's row beside its report (:func:`digest`; the
store keeps it in ``vigil_window_digests``), so that a full read unpacks ~5 KB per window
(a JSON header and the features' floats as raw little-endian float64) instead of parsing
the report: at 500 windows x 50 features, the store read and the unpacking take about a
fifth of what the reports cost (``benchmarks/dashboard_views.py``). Windows stored without
one (before schema v4), or whose digest was made over other feature names (a checksum of
the names tells), are condensed from their report as before.

Consistency: every call re-reads the newest :data:`HEAD` windows (new ones, and any
evaluated late among them); a call asking for more windows than the cache was filled
with, a gap of more than :data:`HEAD` new windows since the last call, or
:data:`RESYNC_SECONDS` since the last full read, reads ``limit`` windows afresh (a
window evaluated out of order further back than :data:`HEAD`, or deleted by retention,
is seen then). Histograms (:meth:`WindowHistory.histograms`) come from the stored
sketches, one read per window, kept for the last :data:`HISTOGRAM_WINDOWS` asked for.

Threads: the views run in the HTTP layer's thread pool; one lock guards the cache, store
reads included (a refresh waits for another's). Failures: store errors propagate
(:class:`~monitoring.store.StoreUnavailable`); the cache is left as it was.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitoring.values import finite_or_none

#: Per feature and window, in this order (NaN where a window has no figure).
FIELDS = ("statistic", "p_value", "p_holm", "effect", "score", "flagged", "missing_rate", "reference_missing_rate",
          "out_of_range_rate", "unseen_rate")
SERVING = ("requests", "server_errors", "client_errors", "error_rate", "latency_p50", "latency_p95",
           "latency_p99", "cpu_cores", "memory_bytes")
HEAD = 16
RESYNC_SECONDS = 300.0
HISTOGRAM_WINDOWS = 64


def _num(v: Any) -> float | None:
    """A JSON-ready number from a stored report: None for missing, non-numeric and
    non-finite values (a latency in the overflow bucket is inf)."""
    return None if isinstance(v, bool) or not isinstance(v, (int, float)) else finite_or_none(v)


@dataclass(frozen=True)
class WindowRow:
    """One evaluated window, condensed; ``features`` is (features x :data:`FIELDS`)."""

    window_id: int
    started_at: float | None
    ended_at: float | None
    evaluated_at: float | None
    rows: int | None
    rows_expected: int | None
    complete: bool | None
    too_small: bool
    share_drifted: float | None
    drifted: tuple[str, ...]
    multivariate: tuple[float | None, bool | None]
    rejected: int
    serving: dict[str, float | None]
    predictions: dict[str, Any]
    features: np.ndarray
    methods: tuple[str | None, ...]


def condense(record, names: Sequence[str]) -> WindowRow:
    """A stored window record (``WindowRecord``) as a :class:`WindowRow` over ``names``."""
    rep = record.report or {}
    row_of = {n: i for i, n in enumerate(names)}
    feats = np.full((len(names), len(FIELDS)), np.nan)
    methods: list[str | None] = [None] * len(names)
    for f in rep.get("features") or ():
        i = row_of.get(f.get("feature"))
        if i is not None:
            methods[i] = f.get("method")
            for k, key in enumerate(FIELDS[:6]):
                v = f.get(key)
                feats[i, k] = float(v) if isinstance(v, (int, float)) else np.nan
    for q in rep.get("quality") or ():
        i = row_of.get(q.get("feature"))
        if i is not None:
            for k, key in enumerate(FIELDS[6:], start=6):
                v = q.get(key)
                feats[i, k] = float(v) if isinstance(v, (int, float)) else np.nan
    mv = rep.get("multivariate") or {}
    sv = rep.get("serving") or {}
    p = rep.get("predictions") or {}
    var = _num(p.get("variance"))
    preds = {"p_value": _num(p.get("p_value")), "flagged": p.get("flagged"),
             "mean_confidence": _num(p.get("mean_confidence")), "mean": _num(p.get("mean")),
             "sd": var ** 0.5 if var is not None and var >= 0 else None, "class_share": p.get("class_share") or {},
             "reference": {"class_share": p.get("reference_class_share"),
                           "mean_confidence": _num(p.get("reference_mean_confidence")),
                           "mean": _num(p.get("reference_mean")), "variance": _num(p.get("reference_variance"))}
             if p else None}
    ended = rep.get("ended_at") or record.ended_at or record.evaluated_at
    return WindowRow(record.window_id, rep.get("started_at", record.started_at), ended, record.evaluated_at,
                     record.rows, record.rows_expected, rep.get("complete"), bool(rep.get("too_small")),
                     _num(rep.get("share_drifted")), tuple(rep.get("drifted") or ()),
                     (_num(mv.get("score")), mv.get("flagged")), int(sum((rep.get("rejected") or {}).values())),
                     {k: _num(sv.get(k)) for k in SERVING}, preds, feats, tuple(methods))


MAGIC = b"VGD1"


def _names_sum(names: Sequence[str]) -> int:
    return zlib.crc32("\x00".join(names).encode())


def pack(row: WindowRow, names: Sequence[str]) -> bytes:
    """``row`` (condensed over ``names``) as a digest: :data:`MAGIC`, the JSON header's
    length (uint32), the header, then ``row.features`` as float64."""
    head = json.dumps({"names": _names_sum(names), "shape": list(row.features.shape), "started_at": row.started_at,
                       "ended_at": row.ended_at, "complete": row.complete, "too_small": row.too_small,
                       "share_drifted": row.share_drifted, "drifted": list(row.drifted),
                       "multivariate": list(row.multivariate), "rejected": row.rejected, "serving": row.serving,
                       "predictions": row.predictions, "methods": list(row.methods)}).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + np.ascontiguousarray(row.features, dtype="<f8").tobytes()


def unpack(d, names: Sequence[str]) -> WindowRow | None:
    """The :class:`WindowRow` of a stored ``WindowDigest``; None when it has no digest, or
    one this code cannot read or made over other feature names (then condense its report)."""
    b = d.digest
    if not b or b[:4] != MAGIC:
        return None
    (n,) = struct.unpack_from("<I", b, 4)
    h = json.loads(b[8:8 + n])
    shape = tuple(h["shape"])
    if h["names"] != _names_sum(names) or shape != (len(names), len(FIELDS)) or len(b) != 8 + n + 8 * shape[0] * shape[1]:
        return None
    feats = np.frombuffer(b, dtype="<f8", offset=8 + n).reshape(shape)
    return WindowRow(d.window_id, h["started_at"], h["ended_at"], d.evaluated_at, d.rows, d.rows_expected,
                     h["complete"], h["too_small"], h["share_drifted"], tuple(h["drifted"]), tuple(h["multivariate"]),
                     h["rejected"], h["serving"], h["predictions"], feats, tuple(h["methods"]))


def digest(record, names: Sequence[str]) -> bytes:
    """What the evaluator stores beside a window's report (``record`` as the store's
    ``WindowRecord``): its row over ``names``, packed."""
    return pack(condense(record, names), names)


def _row(d, names: Sequence[str]) -> WindowRow:
    return unpack(d, names) or condense(d, names)


class WindowHistory:
    """The condensed evaluated windows of ``tag`` from ``store`` (see the module docstring)."""

    def __init__(self, store, tag: str, names: Sequence[str], *, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.tag = tag
        self.names = tuple(names)
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: dict[int, WindowRow] = {}
        self._depth = 0            # windows the last full read asked for
        self._synced = -math.inf   # when that was
        self._hist: OrderedDict[int, dict[str, dict] | None] = OrderedDict()
        self.full_reads = 0

    def recent(self, limit: int, since: float | None = None) -> list[WindowRow]:
        """The newest ``limit`` evaluated windows, oldest first; with ``since`` (epoch
        seconds) only those that ended at or after it (still at most ``limit``)."""
        with self._lock:
            now = self.clock()
            if limit > self._depth or now - self._synced > RESYNC_SECONDS:
                self._read_all(limit, now)
            else:
                head = self.store.windows.digests(self.tag, limit=HEAD)
                top = max(self._rows, default=-1)
                if head and head[-1].window_id > top + 1 and len(head) == HEAD:  # more new windows than HEAD
                    self._read_all(self._depth, now)
                else:
                    for r in head:
                        self._rows[r.window_id] = _row(r, self.names)
                    self._trim()
            ids = sorted(self._rows, reverse=True)[:limit]
            rows = [self._rows[i] for i in reversed(ids)]
        if since is not None:
            rows = [r for r in rows if r.ended_at is not None and r.ended_at >= since]
        return rows

    def _read_all(self, limit: int, now: float) -> None:
        records = self.store.windows.digests(self.tag, limit=limit)
        self._rows = {r.window_id: _row(r, self.names) for r in records}
        self._depth, self._synced = limit, now
        self.full_reads += 1

    def _trim(self) -> None:
        extra = len(self._rows) - (self._depth + HEAD)
        if extra > 0:
            for i in sorted(self._rows)[:extra]:
                del self._rows[i]

    def histograms(self, window_id: int) -> dict[str, dict] | None:
        """Per feature ``{"counts", "missing", "unseen", "n"}`` (and ``moments`` of numeric
        ones) of a window's stored sketch (None when the window keeps no sketch)."""
        with self._lock:
            if window_id in self._hist:
                self._hist.move_to_end(window_id)
                return self._hist[window_id]
        sketch, _ = self.store.windows.sketch(self.tag, window_id)
        out = None
        if sketch is not None:
            out = {}
            for kind in ("numeric", "categorical"):
                for name, s in (sketch.get(kind) or {}).items():
                    out[name] = {"counts": s["counts"], "missing": s["missing"], "unseen": s.get("unseen"),
                                 "n": s.get("n", sum(s["counts"]))}
                    if kind == "numeric":  # the moments and range: the view's window statistics
                        out[name]["moments"] = {k: s.get(k) for k in ("mean", "m2", "min", "max")}
        with self._lock:
            self._hist[window_id] = out
            while len(self._hist) > HISTOGRAM_WINDOWS:
                self._hist.popitem(last=False)
        return out
