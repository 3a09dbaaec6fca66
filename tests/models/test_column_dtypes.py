"""Registration and serving of integer, boolean and date-string columns (issue 18, item 1:
an int64 column crashed `vigil register` when the float32 probe wrote 1e39 into it; item 4:
a date-string column is exempt from drift, with one warning)."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from models.registry import load, register
from monitoring.intake.validation import ValidationFailed, Validator
from service.cli import app


def int_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, size=n).astype("int64")
    label = ((age > 50) ^ (rng.random(n) < 0.1)).astype(int)
    return pd.DataFrame({"age": age, "label": label})


@pytest.fixture(scope="module")
def int_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("int-column")
    train, valid = int_frame(400, seed=1), int_frame(200, seed=2)
    assert train["age"].dtype == np.int64
    for suffix in ("parquet", "csv"):
        getattr(train, f"to_{suffix}")(d / f"train.{suffix}", index=False)
        getattr(valid, f"to_{suffix}")(d / f"valid.{suffix}", index=False)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(train[["age"]], train["label"])
    joblib.dump(model, d / "forest.joblib")
    return {"dir": d, "model": d / "forest.joblib", "train": train, "valid": valid}


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_an_int64_column_registers_as_a_numeric_integer_feature(bentoml_home, int_files, suffix):
    d = int_files["dir"]
    r = register(int_files["model"], d / f"train.{suffix}", "label", validation=d / f"valid.{suffix}",
                 name=f"forest-int-{suffix}")
    m = load(r.tag)
    (age,) = m.schema.features
    assert (age.name, age.kind, age.dtype, age.nullable) == ("age", "numeric", "int", True)  # forests take NaN
    assert (age.minimum, age.maximum) == (18.0, 89.0)
    assert m.schema.float_dtype == "float32"  # the probe's 1e39 reached the forest as a float and overflowed
    assert m.schema.json_schema()["properties"]["age"]["anyOf"][0]["type"] == "integer"
    assert m.profile.rows == 400 and m.meta["n_validation"] == 200
    assert 0.8 < r.baseline["accuracy"] <= 1.0


def test_cli_registers_an_int_column_without_a_traceback(bentoml_home, int_files):
    d = int_files["dir"]
    r = CliRunner().invoke(app, ["register", str(int_files["model"]), "--reference", str(d / "train.csv"),
                                 "--validation", str(d / "valid.parquet"), "--target", "label", "--name", "cli-int"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and r.stdout.strip().splitlines()[-1].startswith("cli-int:")


def test_a_model_over_an_int_column_serves_json_integers_and_integral_floats_like_sklearn(bentoml_home, int_files):
    d = int_files["dir"]
    m = load(register(int_files["model"], d / "train.parquet", "label", validation=d / "valid.parquet",
                      name="forest-int-serve").tag)
    valid = int_files["valid"]
    expected = joblib.load(int_files["model"]).predict(valid[["age"]])
    validator = Validator(m.schema, max_rows=500)
    as_ints = [{"age": int(a)} for a in valid["age"]]
    as_floats = [{"age": float(a)} for a in valid["age"]]  # 3.0 is an integer to JSON Schema
    for rows in (as_ints, as_floats):
        assert (m.adapter.predict(validator.validate(rows)).labels == expected).all()
    with pytest.raises(ValidationFailed, match="expected an integer, got 40.5"):
        validator.validate([{"age": 40.5}])
    with pytest.raises(ValidationFailed, match="row 1, feature 'age'"):
        validator.validate([{"age": 40}, {"age": 10**39}])  # beyond the forest's float32


def test_an_int_column_of_a_model_fitted_on_arrays_registers_as_array_input(bentoml_home, int_files):
    train = int_files["train"]
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(train[["age"]].to_numpy(), train["label"])
    m = load(register(None, int_files["dir"] / "train.csv", "label", model=model, name="forest-int-array").tag)
    assert m.schema.input_format == "array" and m.schema.features[0].dtype == "int"
    batch = Validator(m.schema, max_rows=10).validate([{"age": 20}, {"age": 80.0}])
    assert m.adapter.predict(batch).labels.tolist() == model.predict([[20], [80]]).tolist()


def test_a_bool_column_registers_as_a_boolean_category_and_serves_json_booleans(bentoml_home, tmp_path):
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({"member": rng.random(n) < 0.4, "visits": rng.integers(0, 30, size=n)})
    frame["label"] = (frame["member"] & (frame["visits"] > 10)).astype(int)
    frame.to_parquet(tmp_path / "train.parquet")
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame[["member", "visits"]], frame["label"])
    m = load(register(None, tmp_path / "train.parquet", "label", model=model, name="forest-bool").tag)
    spec = {f.name: f for f in m.schema.features}
    assert (spec["member"].kind, spec["member"].dtype, spec["member"].categories) == ("categorical", "bool",
                                                                                      (False, True))
    assert not spec["member"].accepts_unseen and spec["visits"].dtype == "int"
    rows = frame[["member", "visits"]].head(50)
    batch = Validator(m.schema, max_rows=50).validate([{"member": bool(a), "visits": int(b)} for a, b in rows.values])
    assert (m.adapter.predict(batch).labels == model.predict(rows)).all()
    with pytest.raises(ValidationFailed, match="expected boolean category, got integer"):
        Validator(m.schema, max_rows=1).validate([{"member": 1, "visits": 3}])


def test_a_date_string_column_registers_as_categorical_exempt_from_drift_with_one_warning(bentoml_home, tmp_path):
    rng = np.random.default_rng(4)
    n = 300
    frame = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                          "channel": rng.choice(["web", "shop"], size=n), "amount": rng.normal(50, 10, size=n)})
    frame["label"] = (frame["amount"] > 50).astype(int)
    frame.to_csv(tmp_path / "train.csv", index=False)
    encode = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["day", "channel"])],
                               remainder="passthrough")
    model = make_pipeline(encode, RandomForestClassifier(n_estimators=10, random_state=0))
    model.fit(frame[["day", "channel", "amount"]], frame["label"])
    r = register(None, tmp_path / "train.csv", "label", model=model, name="forest-dates")
    spec = {f.name: f for f in load(r.tag).schema.features}
    assert (spec["day"].kind, spec["day"].dtype, len(spec["day"].categories)) == ("categorical", "str", 300)
    assert spec["day"].accepts_unseen  # the encoder ignores unknown days
    assert spec["day"].drift_exempt == "date-like" and spec["channel"].drift_exempt is None
    dates = [w for w in r.warnings if "looks like a date" in w]
    assert len(dates) == 1 and "'day'" in dates[0] and "300 distinct values in 300 rows" in dates[0]
    assert "not tested for drift" in dates[0] and "--monitor day" in dates[0]
    assert not [w for w in r.warnings if "'channel'" in w]  # two categories in 300 rows is a category
