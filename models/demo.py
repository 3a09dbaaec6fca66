"""Demo models trained on data that ships with scikit-learn, each with a held-out
validation split so that their baselines are honest.

- ``vigil-demo-classifier``: breast cancer (binary, 30 numeric features), a scaled
  logistic regression with ``predict_proba``.
- ``vigil-demo-regressor``: diabetes (10 numeric features), a ridge regression.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import bentoml

from .registry import Registered, register

CLASSIFIER = "vigil-demo-classifier"
REGRESSOR = "vigil-demo-regressor"
TARGET = "target"


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def demo_frames(kind: str, seed: int = 0):
    """(train, validation) DataFrames with snake_case feature names and a ``target``."""
    # scikit-learn is imported here, not at the top: it takes 1.5 s, and `vigil demo
    # --if-missing` with both demo models present must not pay it.
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.model_selection import train_test_split

    ds = load_breast_cancer(as_frame=True) if kind == "classifier" else load_diabetes(as_frame=True)
    frame = ds.frame.rename(columns=_snake)
    stratify = frame[TARGET] if kind == "classifier" else None
    train, valid = train_test_split(frame, test_size=0.4, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def demo_model(kind: str):
    # imported here for start-up time, as in demo_frames
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "classifier":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0))


def register_demo(kind: str, seed: int = 0) -> Registered:
    train, valid = demo_frames(kind, seed)
    model = demo_model(kind).fit(train.drop(columns=[TARGET]).to_numpy(), train[TARGET].to_numpy())
    with tempfile.TemporaryDirectory() as tmp:
        ref, val = Path(tmp) / "reference.parquet", Path(tmp) / "validation.parquet"
        train.to_parquet(ref)
        valid.to_parquet(val)
        return register(None, ref, TARGET, validation=val, name=CLASSIFIER if kind == "classifier" else REGRESSOR,
                        task="classification" if kind == "classifier" else "regression", model=model, seed=seed)


def demo_registered() -> bool:
    try:
        bentoml.models.get(f"{CLASSIFIER}:latest")
        bentoml.models.get(f"{REGRESSOR}:latest")
        return True
    except bentoml.exceptions.NotFound:
        return False
