"""Seeded synthetic data for the drift tests: 20 numeric + 5 categorical features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.frames import frame_to_columns
from monitoring.stats.multivariate import PcaDetector
from monitoring.stats.profile import Profile, edges_from_sample
from monitoring.schema import ModelSchema, infer_feature_specs

NUMERIC = [f"x{i}" for i in range(20)]
CATEGORICAL = [f"c{j}" for j in range(5)]
FREQS = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
SHIFTED_NUMERIC = ["x2", "x5", "x8", "x11", "x14"]
SHIFTED_CATEGORICAL = "c2"


def frame(rng: np.random.Generator, n: int, shift: float = 0.0, reverse_cat: bool = False,
          break_correlation: bool = False) -> pd.DataFrame:
    X = rng.normal(size=(n, 20))
    # x0..x3 come in correlated pairs (rho = 0.9); breaking it keeps every marginal N(0, 1)
    for a, b in ((0, 1), (3, 4)):
        X[:, b] = X[:, b] if break_correlation else 0.9 * X[:, a] + np.sqrt(1 - 0.81) * X[:, b]
    df = pd.DataFrame(X, columns=NUMERIC)
    for name in SHIFTED_NUMERIC:
        df[name] += shift
    for name in CATEGORICAL:
        p = FREQS[::-1] if (reverse_cat and name == SHIFTED_CATEGORICAL) else FREQS
        df[name] = rng.choice(list("abcde"), size=n, p=p)
    return df


def reference(rng: np.random.Generator, n: int, multivariate: bool = True):
    """(schema, reference profile with PCA detector) from a fresh sample of ``n`` rows."""
    df = frame(rng, n)
    schema = ModelSchema(tuple(infer_feature_specs(df)), task="regression")
    num, codes = frame_to_columns(df, schema)
    det = PcaDetector.fit(num) if multivariate else None
    prof = Profile.empty(schema, edges_from_sample(schema, num), np.array([0.0]), detector=det)
    prof.update(num, codes, values=np.zeros(n), mv_errors=None if det is None else det.log_errors(num))
    return schema, prof


def window(schema, prof: Profile, df: pd.DataFrame) -> Profile:
    num, codes = frame_to_columns(df, schema)
    w = prof.empty_like()
    det = prof.detector
    w.update(num, codes, values=np.zeros(len(df)), mv_errors=None if det is None else det.log_errors(num))
    return w
