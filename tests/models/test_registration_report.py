"""Registration says what it found and refuses what it cannot mean (issue 18, item 4): the
report (schema per column, probes, task, classes, sizes), each warning once, a --task the
model contradicts and a --categorical/--monitor name that is no feature refused with a
did-you-mean, id- and date-like columns found and exempt from drift."""

from __future__ import annotations

import json
import logging

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from models.column_roles import DATE_LIKE, ID_LIKE, find_roles
from models.registry import RegistrationError, load, register
from monitoring.schema import infer_feature_specs
from service.cli import app


def mixed_frame(n: int, seed: int) -> pd.DataFrame:
    """Integer, boolean, date-string, text-id and integer-id columns, a float 0.0/1.0 target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": rng.permutation(n) + 10_000 * (seed + 1),
        "age": rng.integers(18, 90, size=n),
        "member": rng.random(n) < 0.4,
        "signup": pd.date_range(f"{2000 + seed}-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "ref": [f"R{seed}-{i:06d}" for i in rng.permutation(n)],
        "amount": rng.normal(50, 10, size=n),
    })
    frame["label"] = ((frame["age"] > 50) ^ (rng.random(n) < 0.1)).astype(float)
    return frame


def mixed_model(train: pd.DataFrame):
    encode = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["member", "signup", "ref"])],
                               remainder="passthrough")
    model = make_pipeline(encode, RandomForestClassifier(n_estimators=10, random_state=0))
    return model.fit(train.drop(columns=["label"]), train["label"])


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    train, valid = mixed_frame(400, seed=0), mixed_frame(150, seed=1)
    train.to_csv(d / "train.csv", index=False)
    valid.to_parquet(d / "valid.parquet")
    joblib.dump(mixed_model(train), d / "model.joblib")
    return d


def _register(d, *extra: str):
    return CliRunner().invoke(app, ["register", str(d / "model.joblib"), "--reference", str(d / "train.csv"),
                                    "--validation", str(d / "valid.parquet"), "--target", "label", *extra])


def _one_error(result) -> str:
    assert result.exit_code == 2, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "Traceback" not in result.output
    return line


def test_the_report_shows_each_columns_kind_type_nullability_categories_and_drift(mixed_files, caplog):
    with caplog.at_level(logging.INFO):
        r = _register(mixed_files, "--name", "mixed-report")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines() == [r.stdout.strip().splitlines()[-1]]  # stdout: the tag alone
    text = r.stderr
    assert "classification model (sklearn.pipeline.Pipeline)" in text
    assert "target 'label': 2 classes: 0, 1" in text  # a float 0.0/1.0 target, as integers
    assert "data: 400 reference rows; 150 validation rows" in text
    assert "baseline (validation): accuracy=" in text
    assert "probes: float32 arithmetic" in text and "unseen categories accepted for ref, signup;" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("    ")}
    assert rows["column"][:6] == ["column", "kind", "type", "nullable", "categories", "drift"]
    assert rows["age"][:6] == ["age", "numeric", "int", "no", "-", "tested"]
    assert rows["member"][:6] == ["member", "boolean", "bool", "no", "2", "tested"]
    assert rows["signup"][:6] == ["signup", "categorical", "str", "no", "400", "no"] and "date-like" in rows["signup"][6]
    assert rows["ref"][:6] == ["ref", "categorical", "str", "no", "400", "no"] and "id-like" in rows["ref"][6]
    assert rows["customer_id"][:6] == ["customer_id", "numeric", "int", "no", "-", "no"]
    assert "features (6, 3 tested for drift)" in text
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and len(set(warnings)) == 3  # one per id- or date-like column, each once
    for column in ("customer_id", "signup", "ref"):
        assert sum(f"'{column}'" in w for w in warnings) == 1
    # the notes went to the report only: no WARNING log record for Python's last-resort handler to print again
    assert not [rec for rec in caplog.records if rec.name == "models.registry" and rec.levelno >= logging.WARNING]


def test_the_json_report_lists_every_feature_and_is_the_only_stdout(mixed_files):
    r = _register(mixed_files, "--name", "mixed-json", "--json", "--monitor", "ref")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["tag"].startswith("mixed-json:") and report["classes"] == [0, 1]
    assert (report["reference_rows"], report["validation_rows"], report["in_sample"]) == (400, 150, False)
    features = {f["name"]: f for f in report["features"]}
    assert features["member"]["kind"] == "boolean" and features["member"]["categories"] == 2
    assert (features["signup"]["role"], features["signup"]["drift_tested"]) == (DATE_LIKE, False)
    assert (features["ref"]["role"], features["ref"]["drift_tested"]) == (ID_LIKE, True)  # kept by --monitor
    assert features["age"]["role"] is None and features["age"]["drift_tested"]
    assert any("tested for drift as asked (--monitor)" in w for w in report["warnings"])
    assert set(report["probes"]) == {"float_dtype", "max_abs", "accepts_nan", "accepts_unseen", "predict_from_proba"}
    assert load(report["tag"]).schema.features[4].drift_exempt is None


@pytest.mark.parametrize("extra, expected", [
    (["--categorical", "agee"], "--categorical agee: no such feature; did you mean 'age'?"),
    (["--categorical", "label"], "--categorical label: 'label' is the target column, not a feature"),
    (["--monitor", "signupp"], "--monitor signupp: no such feature; did you mean 'signup'?"),
    (["--task", "clasification"], "got 'clasification'; did you mean --task classification?"),
    (["--task", "regression"], "the model declares classes (predict_proba or classes_); did you mean --task "
                               "classification?"),
])
def test_a_name_or_task_the_data_contradicts_is_one_line_with_a_did_you_mean(mixed_files, extra, expected):
    assert expected in _one_error(_register(mixed_files, *extra))


def test_classification_asked_of_a_regressor_is_did_you_mean_regression_not_hundreds_of_classes(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    frame["y"] = 150 + 40 * frame["x"] + rng.normal(size=300)
    frame.to_csv(tmp_path / "train.csv", index=False)
    joblib.dump(RandomForestRegressor(n_estimators=5, random_state=0).fit(frame[["x", "z"]], frame["y"]),
                tmp_path / "reg.joblib")
    line = _one_error(CliRunner().invoke(app, ["register", str(tmp_path / "reg.joblib"), "--reference",
                                               str(tmp_path / "train.csv"), "--target", "y", "--task",
                                               "classification"]))
    assert "target 'y' holds 300 distinct numbers" in line and line.endswith("did you mean --task regression?")
    assert len(line) < 300


def test_whole_number_classes_of_a_plain_function_may_be_classification(tmp_path, bentoml_home):
    frame = pd.DataFrame({"x": np.linspace(-1, 1, 100)})
    frame["y"] = (frame["x"] > 0).astype(int)
    frame.to_csv(tmp_path / "train.csv", index=False)
    r = register(None, tmp_path / "train.csv", "y", task="classification", name="fn-classes",
                 model=lambda X: (np.asarray(X)[:, 0] > 0).astype(int))
    assert r.schema.classes == (0, 1)


@pytest.mark.parametrize("values, role", [
    (pd.date_range("2024-01-01", periods=60).strftime("%Y-%m-%d"), DATE_LIKE),
    (pd.date_range("2024-01-01", periods=60, freq="h").strftime("%d/%m/%Y %H:%M"), DATE_LIKE),
    (pd.date_range("2024-01-01", periods=60, freq="min").strftime("%Y-%m-%dT%H:%M:%SZ"), DATE_LIKE),
    (pd.Series(pd.date_range("2024-01-01", periods=60)), DATE_LIKE),  # a Parquet timestamp column
    (["2024-01-01", "2024-02-01"] * 30, DATE_LIKE),  # two dates are still dates: every new one is unseen
    ([f"u{i}" for i in range(60)], ID_LIKE),
    (["web", "shop", "app"] * 20, None),
    ([True, False] * 30, None),
    (list(np.random.default_rng(0).integers(18, 90, size=60)), None),
])
def test_dates_and_ids_are_found_and_categories_and_measurements_are_not(values, role):
    frame = pd.DataFrame({"col": values})
    (spec,) = infer_feature_specs(frame)
    found = find_roles([spec], frame, len(frame))
    assert found.get("col", (None,))[0] == role


@pytest.mark.parametrize("name, values, role", [
    ("customer_id", np.random.default_rng(1).permutation(60) * 7919, ID_LIKE),  # named like an id
    ("orderId", np.random.default_rng(2).permutation(60) * 7919, ID_LIKE),
    ("row", np.arange(60), ID_LIKE),  # a sequence: two values per row at most
    ("amount_cents", np.random.default_rng(3).permutation(60) * 7919, None),  # distinct, but a measurement
    ("visits", np.arange(60) % 7, None),
    ("user_id", np.append(np.arange(59) * 7.0, np.nan), ID_LIKE),  # ids with a gap: read as float
    ("score_id", np.arange(60) + 0.5, None),  # not whole numbers: not ids, whatever the name
])
def test_an_integer_column_is_an_id_only_when_named_so_or_a_sequence(name, values, role):
    col = pd.Series(values)
    if col.notna().all() and (col % 1 == 0).all():
        col = col.astype("int64")
    frame = pd.DataFrame({name: col})
    (spec,) = infer_feature_specs(frame)
    assert find_roles([spec], frame, len(frame)).get(name, (None,))[0] == role


def test_a_feature_of_a_regression_target_that_is_text_is_did_you_mean_classification(tmp_path):
    frame = pd.DataFrame({"x": np.linspace(0, 1, 60), "y": ["a", "b"] * 30})
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(RegistrationError, match="target 'y' is not numeric; did you mean --task classification"):
        register(None, tmp_path / "train.csv", "y", task="regression", model=lambda X: np.zeros(len(X)))
