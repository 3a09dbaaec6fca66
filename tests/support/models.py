"""Models for tests, importable by the server process (so they unpickle there)."""

from __future__ import annotations

import numpy as np


class ExplodingClassifier:
    """Predicts like ``inner`` but raises when the first feature equals ``trigger`` (a
    valid input no registration probe sends: the model itself is at fault)."""

    def __init__(self, inner, trigger: float):
        self.inner = inner
        self.trigger = trigger
        self.classes_ = inner.classes_

    def _check(self, X):
        if (np.asarray(X, dtype=float)[:, 0] == self.trigger).any():
            raise RuntimeError("boom: the model failed on this input")

    def predict(self, X):
        self._check(X)
        return self.inner.predict(X)

    def predict_proba(self, X):
        self._check(X)
        return self.inner.predict_proba(X)
