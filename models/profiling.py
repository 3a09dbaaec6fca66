"""Profile building: the reference profile the monitors compare live traffic against.

Owns the second pass over the reference data. Bins come from the bounded reference
sample (quantile edges per numeric feature, the prediction edges of a regressor), the
multivariate detector (:class:`~monitoring.stats.multivariate.PcaDetector`) is fitted on
the sample's numeric block (less the features exempt from drift: ids, dates), and then
every reference row, chunk by chunk, updates the sketches: features, predictions
(classes and probabilities, or values) and the detector's reconstruction errors. Rows reach the model as serving would hand them over
(:mod:`models.frames`), so the prediction sketches describe what serving will see.
Memory is bounded by the chunk size and the sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.profile import Profile, edges_from_sample
from monitoring.stats.sketches import quantile_edges

from .adapters import ModelAdapter
from .data import iter_frames
from .frames import frame_to_columns, predict_frame

#: Bins of a regressor's prediction histogram.
PREDICTION_BINS = 20


def build_profile(adapter: ModelAdapter, reference: str | Path, sample: pd.DataFrame, *, seed: int = 0) -> Profile:
    """Sketch every row of ``reference`` with bins taken from ``sample`` (its feature columns)."""
    schema = adapter.schema
    names = list(schema.names)
    features = sample[names]
    numeric_sample, _ = frame_to_columns(features, schema)
    regression = schema.task == "regression"
    pred_edges = None
    if regression:
        _, sp = predict_frame(adapter, features)
        pred_edges = quantile_edges(sp.labels.astype(np.float64), PREDICTION_BINS)
    exempt = tuple(j for j, f in enumerate(schema.numeric) if f.drift_exempt is not None)
    detector = PcaDetector.fit(numeric_sample, seed=seed, ignored=exempt)
    profile = Profile.empty(schema, edges_from_sample(schema, numeric_sample), pred_edges, detector=detector)
    for chunk in iter_frames(reference):
        batch, pred = predict_frame(adapter, chunk[names])
        profile.update(batch.numeric, batch.codes, class_codes=pred.class_codes, proba=pred.proba,
                       values=pred.labels.astype(np.float64) if regression else None,
                       mv_errors=None if detector is None else detector.log_errors(batch.numeric))
    return profile
