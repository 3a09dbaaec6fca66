"""Models for tests, importable by the server process (so they unpickle there)."""

from __future__ import annotations

import numpy as np


class _Triggered:
    """Predicts like ``inner``, but calls :meth:`_on_trigger` first when the first feature
    equals ``trigger`` (a valid input no registration probe sends)."""

    def __init__(self, inner, trigger: float):
        self.inner = inner
        self.trigger = trigger
        self.classes_ = inner.classes_

    def _on_trigger(self) -> None:
        raise NotImplementedError

    def _check(self, X):
        if (np.asarray(X, dtype=float)[:, 0] == self.trigger).any():
            self._on_trigger()

    def predict(self, X):
        self._check(X)
        return self.inner.predict(X)

    def predict_proba(self, X):
        self._check(X)
        return self.inner.predict_proba(X)


class ExplodingClassifier(_Triggered):
    """Raises on the trigger input: the model itself is at fault."""

    def _on_trigger(self) -> None:
        raise RuntimeError("boom: the model failed on this input")


class WaitingClassifier(_Triggered):
    """Sleeps ``seconds`` on the trigger input: a model that waits (on I/O, a lock) and so
    costs little CPU yet blocks."""

    def __init__(self, inner, trigger: float, seconds: float):
        super().__init__(inner, trigger)
        self.seconds = seconds

    def _on_trigger(self) -> None:
        import time

        time.sleep(self.seconds)
