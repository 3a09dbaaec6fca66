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


class WaitingClassifier:
    """Predicts like ``inner``, but first sleeps ``seconds`` when the first feature equals
    ``trigger``: a model that waits (on I/O, a lock) and so costs little CPU yet blocks."""

    def __init__(self, inner, trigger: float, seconds: float):
        self.inner = inner
        self.trigger = trigger
        self.seconds = seconds
        self.classes_ = inner.classes_

    def _wait(self, X):
        import time

        if (np.asarray(X, dtype=float)[:, 0] == self.trigger).any():
            time.sleep(self.seconds)

    def predict(self, X):
        self._wait(X)
        return self.inner.predict(X)

    def predict_proba(self, X):
        self._wait(X)
        return self.inner.predict_proba(X)
