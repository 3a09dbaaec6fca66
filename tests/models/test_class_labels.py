"""Class labels of a classifier trained on a float target (issue 18, item 9): classes
0.0/1.0 are registered as the integers 0/1, predictions come back as 0/1, and the baseline
and the stored validation rows still match the float labels by value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from models.registry import load, load_validation, register
from models.schema_inference import integral_classes
from monitoring.intake.outcomes import parse_outcomes
from monitoring.intake.validation import Validator


@pytest.fixture(scope="module")
def float_target(tmp_path_factory, bentoml_home):
    rng = np.random.default_rng(11)
    n = 400
    frame = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n)})
    frame["label"] = (frame["x"] + 0.3 * rng.normal(size=n) > 0).astype(float)  # 0.0 / 1.0, as a CSV with a gap
    d = tmp_path_factory.mktemp("float-target")
    frame.iloc[:300].to_csv(d / "train.csv", index=False)
    frame.iloc[300:].to_csv(d / "valid.csv", index=False)
    model = LogisticRegression().fit(frame.iloc[:300][["x", "z"]], frame.iloc[:300]["label"])
    assert model.classes_.dtype == np.float64
    r = register(None, d / "train.csv", "label", validation=d / "valid.csv", model=model, name="float-target")
    return r, load(r.tag), model, frame.iloc[300:]


def test_integral_float_classes_are_registered_as_integers(float_target):
    r, m, _, _ = float_target
    assert m.schema.classes == (0, 1) and all(type(c) is int for c in m.schema.classes)
    assert r.baseline["accuracy"] > 0.8


def test_predictions_come_back_as_the_registered_integer_classes(float_target):
    _, m, model, valid = float_target
    rows = valid[["x", "z"]].to_dict("records")
    pred = m.adapter.predict(Validator(m.schema, max_rows=200).validate(rows))
    assert all(type(v) is int for v in pred.labels.tolist())
    assert pred.labels.tolist() == [int(v) for v in model.predict(valid[["x", "z"]])]


def test_the_stored_validation_rows_and_feedback_match_the_classes_by_value(float_target):
    _, m, _, valid = float_target
    y_true, y_pred, _ = load_validation(m)
    assert len(y_true) == len(valid) and set(y_true) <= {0, 1}
    parsed = parse_outcomes([{"request_id": "r", "index": 0, "outcome": 1.0},
                             {"request_id": "r", "index": 1, "outcome": 0}], m.schema, 10, now=1e9)
    assert [o.class_code for o in parsed] == [1, 0]


@pytest.mark.parametrize("classes, registered", [
    ((0.0, 1.0), (0, 1)),
    ((1.0, 2.0, 3.0), (1, 2, 3)),
    ((0.0, 0.5, 1.0), (0.0, 0.5, 1.0)),  # not all whole: kept as floats (feedback still matches by value)
    ((False, True), (False, True)),
    (("no", "yes"), ("no", "yes")),
    ((), ()),
])
def test_only_classes_that_are_all_whole_floats_become_integers(classes, registered):
    out = integral_classes(classes)
    assert out == registered and [type(c) for c in out] == [type(c) for c in registered]
