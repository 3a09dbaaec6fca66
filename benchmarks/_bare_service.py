"""The baseline for ``serving_overhead.py``: the same stored model behind plain BentoML.

This is what a competent user would write without Vigil: load the pickled estimator,
turn the JSON rows into a float array in feature order, call ``predict_proba`` once and
return labels and probabilities. No validation beyond pydantic's, no metrics of its
own, no monitor hand-off.

Environment (read at import; ``VIGIL_BENCH_*`` is ignored by Vigil's config):

- ``VIGIL_BENCH_MODEL``: model tag (default: the demo classifier).
- ``VIGIL_BENCH_OTLP_ENDPOINT``: when set (e.g. ``http://127.0.0.1:4318/v1/traces``),
  BentoML's own tracing is switched on with every request sampled and exported over
  OTLP/HTTP there; unset, the service is declared without any tracing config.

Serve with ``bentoml serve _bare_service:BareModel --working-dir benchmarks``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bentoml
import numpy as np
from pydantic import BaseModel

MODEL_TAG = os.environ.get("VIGIL_BENCH_MODEL", "vigil-demo-classifier:latest")
OTLP_ENDPOINT = os.environ.get("VIGIL_BENCH_OTLP_ENDPOINT")

_config: dict = {"name": "bare", "workers": 1, "traffic": {"timeout": 60}}
if OTLP_ENDPOINT:
    _config["tracing"] = {"sample_rate": 1.0, "exporter_type": "otlp",
                          "otlp": {"protocol": "http", "endpoint": OTLP_ENDPOINT}}


class Prediction(BaseModel):
    predictions: list
    probabilities: list[list[float]]


@bentoml.service(**_config)
class BareModel:
    stored_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        import joblib

        path = Path(self.stored_model.path)
        self.model = joblib.load(path / "model.joblib")
        schema = json.loads((path / "vigil.json").read_text())["schema"]
        self.features = [f["name"] for f in schema["features"]]
        self.classes = self.model.classes_

    @bentoml.api(route="/predict")
    def predict(self, instances: list[dict[str, float]]) -> Prediction:
        X = np.array([[row[name] for name in self.features] for row in instances], dtype=np.float64)
        proba = self.model.predict_proba(X)
        labels = self.classes[proba.argmax(axis=1)]
        return Prediction(predictions=labels.tolist(), probabilities=proba.tolist())
