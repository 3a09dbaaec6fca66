"""Prediction-log rows built on the monitor thread (what ``/feedback`` later joins)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Sequence

import numpy as np

from monitoring.runtime.queue import MonitorItem


class PredictionLogger:
    """Builds prediction-log rows: ids, time, window, prediction, probabilities, trace id,
    and (for a sampled share of rows) the feature values after the privacy rules
    (``keep``, ``hash``: salted SHA-256, ``drop``)."""

    def __init__(self, model: str, schema, sample_rate: float = 1.0, privacy: dict[str, str] | None = None,
                 salt: str = "", seed: int | None = None):
        if not 0 <= sample_rate <= 1:
            raise ValueError(f"sample_rate must be in [0, 1]; got {sample_rate}")
        privacy = dict(privacy or {})
        bad = {k: v for k, v in privacy.items() if v not in ("keep", "hash", "drop")}
        if bad:
            raise ValueError(f"privacy rules must be keep, hash or drop; got {bad}")
        unknown = sorted(set(privacy) - set(schema.names))
        if unknown:
            raise ValueError(f"privacy rules name unknown feature(s): {', '.join(unknown)}")
        self.model = model
        self.schema = schema
        self.sample_rate = sample_rate
        self.privacy = privacy
        self.salt = salt
        self._rng = np.random.default_rng(seed)
        self._num = [f.name for f in schema.numeric]
        self._cat = [f.name for f in schema.categorical]

    def _value(self, name: str, v):
        rule = self.privacy.get(name, "keep")
        if rule == "keep":
            return v

        return hashlib.sha256(f"{self.salt}|{v}".encode()).hexdigest()[:16]

    def features(self, item: MonitorItem, i: int, numeric_row: list | None = None) -> str:
        out = {}
        row = numeric_row if numeric_row is not None else item.batch.numeric[i].tolist()
        for name, v in zip(self._num, row):
            if self.privacy.get(name) == "drop":
                continue
            out[name] = None if math.isnan(v) else self._value(name, v)
        for name in self._cat:
            if self.privacy.get(name) == "drop":
                continue
            v = item.batch.categorical[name][i] if name in item.batch.categorical else None
            v = None if (v is None or (isinstance(v, float) and math.isnan(v))) else v
            out[name] = None if v is None else self._value(name, v.item() if hasattr(v, "item") else v)
        return json.dumps(out)

    def rows(self, items: Sequence[MonitorItem], start: int, window_rows: int) -> list[dict]:
        rows = []
        seq = start
        classification = self.schema.task == "classification"
        for item in items:
            sampled = self._rng.random(item.n_rows) < self.sample_rate if self.sample_rate < 1 else None
            ids = item.batch.instance_ids
            proba32 = item.proba.astype(np.float32) if item.proba is not None else None
            numeric_rows = item.batch.numeric.tolist() if self.sample_rate > 0 else None
            for i in range(item.n_rows):
                keep = sampled is None or sampled[i]
                rows.append({
                    "model": self.model, "request_id": item.request_id, "row_index": i, "seq": seq,
                    "window_id": seq // window_rows, "predicted_at": item.received_at,
                    "client_request_id": item.client_request_id,
                    "instance_id": None if ids is None or ids[i] is None else str(ids[i]),
                    "class_code": int(item.class_codes[i]) if classification and item.class_codes is not None else None,
                    "value": None if classification else float(item.labels[i]),
                    "proba": proba32[i].tobytes() if proba32 is not None else None,
                    "trace_id": item.trace_id,
                    "features": self.features(item, i, numeric_rows[i]) if (keep and self.sample_rate > 0) else None,
                })
                seq += 1
        return rows
