import json

import pytest
from typer.testing import CliRunner

from models.registry import load, register
from service.cli import app


def test_demo_models_have_honest_baselines(demo_tags):
    clf = load(demo_tags["classifier"])
    assert clf.schema.task == "classification" and clf.schema.classes == (0, 1)
    assert not clf.in_sample and clf.meta["n_validation"] == 228
    assert 0.9 < clf.meta["baseline"]["accuracy"] <= 1.0 and "roc_auc" in clf.meta["baseline"]
    assert clf.schema.input_format == "array" and clf.schema.float_dtype == "float64"
    reg = load(demo_tags["regressor"])
    assert reg.schema.task == "regression" and {"mse", "rmse", "mae", "r2", "mape"} <= set(reg.meta["baseline"])
    assert reg.profile.predictions.values is not None and reg.profile.predictions.values.n == reg.meta["n_reference"]


def test_reference_artifact_is_complete(demo_tags):
    import pandas as pd

    m = load(demo_tags["classifier"])
    assert m.profile.rows == m.meta["n_reference"] == 341
    assert all(s.n == 341 for s in m.profile.numeric.values())
    assert m.profile.predictions.classes.n == 341
    ref = pd.read_parquet(m.path / "reference.parquet")
    val = pd.read_parquet(m.path / "validation.parquet")
    assert len(ref) == 341 and "target" in ref
    assert len(val) == 228 and {"__prediction__", "__proba_0__", "__proba_1__"} <= set(val.columns)
    # the stored validation predictions are the model's own
    X = val[list(m.schema.names)].to_numpy()
    assert (m.adapter.model.predict(X) == val["__prediction__"].to_numpy()).all()


def test_tree_model_is_float32(test_tags):
    assert load(test_tags["tree"]).schema.float_dtype == "float32"


def test_categorical_pipeline_schema_and_unseen_probe(test_tags):
    strict, lenient = load(test_tags["cat_strict"]), load(test_tags["cat_lenient"])
    for m in (strict, lenient):
        spec = {f.name: f for f in m.schema.features}
        assert spec["color"].kind == "categorical" and spec["color"].categories == ("blue", "green", "red")
        assert spec["size"].kind == "numeric" and spec["weight"].nullable
        assert m.schema.input_format == "frame"
    assert not {f.name: f for f in strict.schema.features}["color"].accepts_unseen
    assert {f.name: f for f in lenient.schema.features}["color"].accepts_unseen


def test_without_validation_the_baseline_is_marked_in_sample(test_tags):
    m = load(test_tags["in_sample"])
    assert m.in_sample and m.meta["in_sample"] is True


def test_cli_register_prints_tag_and_warns_in_sample(bentoml_home, model_files):
    r = CliRunner().invoke(app, ["register", str(model_files["tree"]), "--reference", str(model_files["bc_train"]),
                                 "--target", "target", "--name", "cli-tree"])
    assert r.exit_code == 0, r.output
    tag = r.stdout.strip().splitlines()[-1]
    assert tag.startswith("cli-tree:")
    assert "in-sample" in r.output
    assert load(tag).in_sample


@pytest.mark.parametrize("case, message", [
    ("missing_model", "no such file"),
    ("not_a_model", "cannot load model"),
    ("missing_target", "target column 'nope' not found"),
    ("bad_reference", "cannot read"),
    ("cannot_predict", "cannot predict on the reference"),
])
def test_cli_errors_are_one_clear_line(tmp_path, model_files, case, message):
    model, ref, target = str(model_files["tree"]), str(model_files["bc_train"]), "target"
    if case == "missing_model":
        model = str(tmp_path / "absent.joblib")
    elif case == "not_a_model":
        (tmp_path / "junk.joblib").write_bytes(b"not a pickle")
        model = str(tmp_path / "junk.joblib")
    elif case == "missing_target":
        target = "nope"
    elif case == "bad_reference":
        (tmp_path / "bad.parquet").write_bytes(b"garbage")
        ref = str(tmp_path / "bad.parquet")
    elif case == "cannot_predict":
        ref = str(model_files["cat_train"])  # the tree expects 30 numeric columns
        target = "label"
    r = CliRunner().invoke(app, ["register", model, "--reference", ref, "--target", target])
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output
    assert len([line for line in r.output.strip().splitlines() if line.strip()]) == 1


def test_register_handles_data_in_chunks(tmp_path, model_files, monkeypatch):
    import models.data

    chunks = []
    real_add = models.data.Reservoir.add

    def counting_add(self, frame):
        chunks.append(len(frame))
        return real_add(self, frame)

    monkeypatch.setattr(models.data, "CHUNK_ROWS", 50)
    monkeypatch.setattr(models.data.Reservoir, "add", counting_add)
    r = register(model_files["tree"], model_files["bc_train"], "target", validation=model_files["bc_valid"],
                 name="chunked", sample_rows=100)
    m = load(r.tag)
    assert m.profile.rows == 341  # every row counted across 7 chunks
    assert len(json.loads((m.path / "vigil.json").read_text())["schema"]["features"]) == 30
    assert max(chunks) == 50 and sum(chunks) == 341 + 228  # reference, then validation, 50 rows at a time


def test_registration_probes_the_largest_magnitude_the_model_takes(demo_tags):
    from monitoring.intake.validation import ValidationFailed, Validator

    m = load(demo_tags["classifier"])
    # the scaler divides by scales below 1, so float64's maximum would overflow to inf
    assert m.schema.max_abs is not None and 1e39 <= m.schema.value_limit < 1.7e308
    row = {n: 1.0 for n in m.schema.names}
    v = Validator(m.schema, 10)
    v.validate([{**row, "mean_radius": m.schema.value_limit}])
    with pytest.raises(ValidationFailed, match="largest magnitude"):
        v.validate([{**row, "mean_radius": m.schema.value_limit * 10}])
    spec = m.schema.json_schema()["properties"]["mean_radius"]
    assert spec["maximum"] == m.schema.value_limit and spec["minimum"] == -m.schema.value_limit


def test_vigil_decision_threshold_replaces_the_models_own_decision_rule(demo_tags, demo_rows):
    """VIGIL_DECISION_THRESHOLD is read from the environment and, on a binary classifier,
    predicts the second class exactly where its probability reaches the threshold."""
    import numpy as np

    from models.adapters import ModelAdapter
    from monitoring.config import ConfigError, load_settings
    from monitoring.intake.validation import Validator

    threshold = load_settings(environ={"VIGIL_DECISION_THRESHOLD": "0.9"}).decision_threshold
    assert threshold == 0.9
    for bad in ("0", "1", "1.5"):
        with pytest.raises(ConfigError, match="decision_threshold"):
            load_settings(environ={"VIGIL_DECISION_THRESHOLD": bad})
    m = load(demo_tags["classifier"])
    batch = Validator(m.schema, max_rows=len(demo_rows)).validate(demo_rows)
    own = m.adapter.predict(batch)
    strict = ModelAdapter(m.adapter.model, m.schema, decision_threshold=threshold).predict(batch)
    classes = np.asarray(m.schema.classes, dtype=object)
    assert strict.labels.tolist() == classes[(strict.proba[:, 1] >= 0.9).astype(int)].tolist()
    assert strict.class_codes.tolist() == (strict.proba[:, 1] >= 0.9).astype(int).tolist()
    changed = int((own.labels != strict.labels).sum())
    assert changed > 0, "no row between 0.5 and 0.9: the threshold was not exercised"
    with pytest.raises(ValueError, match="binary"):
        ModelAdapter(load(demo_tags["regressor"]).adapter.model, load(demo_tags["regressor"]).schema,
                     decision_threshold=0.5)
