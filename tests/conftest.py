"""Test session setup: a private BentoML home with the demo and test models registered."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports bentoml: a private model store, no tracking.
_HOME = Path(tempfile.mkdtemp(prefix="vigil-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
for _k in [k for k in os.environ if k.startswith("VIGIL_") and not k.startswith("VIGIL_TEST_")]:
    del os.environ[_k]  # the developer's own settings must not leak into tests
for _k in [k for k in os.environ if k.startswith("OTEL_")]:
    del os.environ[_k]

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tests.support.backends import BACKENDS, store_url  # noqa: E402


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def demo_tags(bentoml_home) -> dict[str, str]:
    from models.demo import register_demo

    return {"classifier": register_demo("classifier").tag, "regressor": register_demo("regressor").tag}


@pytest.fixture(scope="session")
def demo_rows() -> list[dict]:
    from models.demo import demo_frames

    _, valid = demo_frames("classifier")
    return valid.drop(columns=["target"]).to_dict("records")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def categorical_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], size=n)
    size = rng.normal(10, 3, size=n)
    weight = rng.normal(5, 1, size=n)
    weight[rng.random(n) < 0.05] = np.nan
    logit = (color == "red") * 1.5 + (size - 10) / 3 - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"color": color, "size": size, "weight": weight, "label": y})


def categorical_pipeline(handle_unknown: str = "error"):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    pre = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown=handle_unknown), ["color"]),
        ("num", SimpleImputer(), ["size", "weight"]),
    ])
    return make_pipeline(pre, LogisticRegression())


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """Model and data files written as a user would hand them to `vigil register`."""
    from sklearn.tree import DecisionTreeClassifier

    from models.demo import demo_frames
    from tests.support.models import ExplodingClassifier, WaitingClassifier

    d = tmp_path_factory.mktemp("models")
    train, valid = demo_frames("classifier")
    X, y = train.drop(columns=["target"]), train["target"]
    train.to_csv(d / "bc_train.csv", index=False)
    valid.to_parquet(d / "bc_valid.parquet")
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X.to_numpy(), y)
    joblib.dump(tree, d / "tree.joblib")
    exploding = ExplodingClassifier(tree, trigger=4242.0)
    joblib.dump(exploding, d / "exploding.joblib")
    joblib.dump(WaitingClassifier(tree, trigger=4243.0, seconds=1.5), d / "waiting.joblib")
    cat = categorical_frame()
    cat.iloc[:300].to_csv(d / "cat_train.csv", index=False)
    cat.iloc[300:].to_csv(d / "cat_valid.csv", index=False)
    joblib.dump(categorical_pipeline("error").fit(cat.iloc[:300].drop(columns=["label"]), cat.iloc[:300]["label"]),
                d / "cat_strict.joblib")
    joblib.dump(categorical_pipeline("ignore").fit(cat.iloc[:300].drop(columns=["label"]), cat.iloc[:300]["label"]),
                d / "cat_lenient.joblib")
    return {k: d / v for k, v in {
        "bc_train": "bc_train.csv", "bc_valid": "bc_valid.parquet", "tree": "tree.joblib",
        "exploding": "exploding.joblib", "waiting": "waiting.joblib", "cat_train": "cat_train.csv", "cat_valid": "cat_valid.csv",
        "cat_strict": "cat_strict.joblib", "cat_lenient": "cat_lenient.joblib"}.items()}


@pytest.fixture(scope="session")
def test_tags(bentoml_home, model_files) -> dict[str, str]:
    from models.registry import register

    f = model_files
    return {
        "tree": register(f["tree"], f["bc_train"], "target", validation=f["bc_valid"], name="tree").tag,
        "exploding": register(f["exploding"], f["bc_train"], "target", validation=f["bc_valid"], name="exploding").tag,
        "waiting": register(f["waiting"], f["bc_train"], "target", validation=f["bc_valid"], name="waiting").tag,
        "cat_strict": register(f["cat_strict"], f["cat_train"], "label", validation=f["cat_valid"], name="cat-strict").tag,
        "cat_lenient": register(f["cat_lenient"], f["cat_train"], "label", validation=f["cat_valid"],
                                name="cat-lenient").tag,
        "in_sample": register(f["tree"], f["bc_train"], "target", name="tree-in-sample").tag,
    }


@pytest.fixture(scope="session")
def demo_tags_reference_sd(demo_tags) -> dict[str, float]:
    """Per-feature standard deviation of the demo classifier's reference data."""
    from models.registry import load

    prof = load(demo_tags["classifier"]).profile
    return {k: float(np.sqrt(s.variance)) for k, s in prof.numeric.items()}


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    """A fresh :class:`~monitoring.store.Store` on each backend (tests use unique model names)."""
    from monitoring.store import Store

    s = Store(store_url(request.param, tmp_path))
    yield s
    s.dispose()
