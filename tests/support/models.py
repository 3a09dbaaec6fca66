"""Models for tests, importable by the server process (so they unpickle there)."""

from __future__ import annotations

import numpy as np


class ExplodingClassifier:
    """Predicts like ``inner`` but raises when the first feature exceeds ``limit``."""

    def __init__(self, inner, limit: float):
        self.inner = inner
        self.limit = limit
        self.classes_ = inner.classes_

    def predict(self, X):
        if np.asarray(X, dtype=float)[:, 0].max() > self.limit:
            raise RuntimeError("boom: feature out of what this model can take")
        return self.inner.predict(X)

    def predict_proba(self, X):
        if np.asarray(X, dtype=float)[:, 0].max() > self.limit:
            raise RuntimeError("boom: feature out of what this model can take")
        return self.inner.predict_proba(X)
