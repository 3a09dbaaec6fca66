import math

import pytest

from monitoring import names as N
from monitoring.schema import FeatureSpec, ModelSchema
from monitoring.intake.validation import MISSING_CODE, UNSEEN_CODE, ValidationFailed, Validator


def schema(float_dtype="float64"):
    return ModelSchema(
        features=(
            FeatureSpec("age", "numeric", "int", minimum=18, maximum=90),
            FeatureSpec("income", "numeric", "float", nullable=True, minimum=0, maximum=1e6),
            FeatureSpec("city", "categorical", "str", categories=("Paris", "Zürich")),
            FeatureSpec("tier", "categorical", "int", nullable=True, categories=(1, 2, 3), accepts_unseen=True),
        ),
        task="classification", classes=(0, 1), float_dtype=float_dtype)


def ok_row(**kw):
    return {"age": 30, "income": 1000.5, "city": "Paris", "tier": 2, **kw}


def reject(v: Validator, instances):
    with pytest.raises(ValidationFailed) as e:
        v.validate(instances)
    return e.value


def test_valid_batch_is_columnar_with_codes():
    v = Validator(schema(), max_rows=10)
    b = v.validate([ok_row(), ok_row(age=40, income=None, city="Zürich", tier=None)])
    assert b.n_rows == 2
    assert b.numeric.shape == (2, 2) and b.numeric[0].tolist() == [30.0, 1000.5]
    assert math.isnan(b.numeric[1, 1])  # nullable: missing, monitored not rejected
    assert b.codes.tolist() == [[0, 1], [1, MISSING_CODE]]
    assert b.categorical["city"].tolist() == ["Paris", "Zürich"]


def test_out_of_reference_range_is_accepted():
    b = Validator(schema(), max_rows=10).validate([ok_row(age=200, income=-5.0)])
    assert b.numeric[0].tolist() == [200.0, -5.0]


def test_unseen_category_accepted_where_model_takes_it():
    b = Validator(schema(), max_rows=10).validate([ok_row(tier=7)])
    assert b.codes[0, 1] == UNSEEN_CODE


@pytest.mark.parametrize("instances, kind, row, feature", [
    ([ok_row(city="Lyon")], N.ERR_UNSEEN_CATEGORY, 0, "city"),
    ([ok_row(), {k: v for k, v in ok_row().items() if k != "age"}], N.ERR_MISSING_FEATURE, 1, "age"),
    ([{**ok_row(), "colour": "red"}], N.ERR_UNKNOWN_FEATURE, 0, "colour"),
    ([ok_row(age="30")], N.ERR_WRONG_TYPE, 0, "age"),
    ([ok_row(age=True)], N.ERR_WRONG_TYPE, 0, "age"),
    ([ok_row(age=30.5)], N.ERR_WRONG_TYPE, 0, "age"),
    ([ok_row(city=3)], N.ERR_WRONG_TYPE, 0, "city"),
    ([ok_row(age=None)], N.ERR_NULL, 0, "age"),
    ([ok_row(city=None)], N.ERR_NULL, 0, "city"),
    ([ok_row(age=float("nan"))], N.ERR_NULL, 0, "age"),
    ([ok_row(income=float("inf"))], N.ERR_NON_FINITE, 0, "income"),
    ([ok_row(income=-float("inf"))], N.ERR_NON_FINITE, 0, "income"),
    ([ok_row(income=10**400)], N.ERR_OVERFLOW, 0, "income"),
    ([ok_row(), ok_row(), "row"], N.ERR_MALFORMED, 2, None),
])
def test_bad_input_names_row_and_feature(instances, kind, row, feature):
    err = reject(Validator(schema(), max_rows=10), instances)
    assert err.status == 422
    first = err.errors[0]
    assert (first.kind, first.row, first.feature) == (kind, row, feature)
    assert f"row {row}" in str(err)
    if feature:
        assert repr(feature) in str(err)


def test_float32_model_rejects_1e39_but_float64_model_takes_it():
    err = reject(Validator(schema("float32"), max_rows=10), [ok_row(income=1e39)])
    assert err.errors[0].kind == N.ERR_OVERFLOW and "float32" in err.errors[0].message
    assert Validator(schema("float64"), max_rows=10).validate([ok_row(income=1e39)]).numeric[0, 1] == 1e39


def test_negative_zero_and_unicode_categories():
    b = Validator(schema(), max_rows=10).validate([ok_row(income=-0.0, city="Zürich")])
    assert b.numeric[0, 1] == 0.0 and b.codes[0, 0] == 1


@pytest.mark.parametrize("instances, kind, status", [
    ([], N.ERR_EMPTY_BATCH, 422),
    ({"age": 1}, N.ERR_MALFORMED, 422),
    (None, N.ERR_MALFORMED, 422),
    ([ok_row()] * 11, N.ERR_TOO_MANY_ROWS, 413),
])
def test_batch_level_errors(instances, kind, status):
    err = reject(Validator(schema(), max_rows=10), instances)
    assert (err.kind, err.status) == (kind, status)
    assert "instances" in str(err) or "batch" in str(err)


def test_all_errors_counted_but_report_bounded():
    rows = [ok_row(age="x") for _ in range(50)]
    err = reject(Validator(schema(), max_rows=100), rows)
    assert err.total == 50 and len(err.errors) == 20
    assert "and 49 more" in str(err)


def test_instance_ids_kept_and_checked():
    v = Validator(schema(), max_rows=10, id_field="txn")
    b = v.validate([ok_row(txn="a-1"), ok_row(txn=7), ok_row()])
    assert b.instance_ids == ("a-1", 7, None)
    assert b.numeric.shape == (3, 2)  # the id never reaches the model's columns
    assert reject(v, [ok_row(txn="a"), ok_row(txn="a")]).errors[0].kind == N.ERR_BAD_ID
    assert reject(v, [ok_row(txn=1.5)]).errors[0].kind == N.ERR_BAD_ID


def test_validator_arguments_checked():
    with pytest.raises(ValueError, match="max_rows"):
        Validator(schema(), max_rows=0)
    with pytest.raises(ValueError, match="also a feature"):
        Validator(schema(), max_rows=1, id_field="age")


def test_json_schema_describes_features():
    js = schema().json_schema("txn")
    assert js["required"] == ["age", "income", "city", "tier"]
    assert js["properties"]["age"]["type"] == "integer"
    assert js["properties"]["city"]["enum"] == ["Paris", "Zürich"]
    assert "enum" not in str(js["properties"]["tier"])  # accepts unseen: no enum
    assert {"type": "null"} in js["properties"]["income"]["anyOf"]
    assert js["additionalProperties"] is False


def test_a_missing_feature_hides_none_of_the_other_errors():
    """Issue 18 item 7: every problem of the batch, structural or not, in one answer."""
    v = Validator(schema(), max_rows=10)
    missing_income = {k: val for k, val in ok_row(city="Lyon").items() if k != "income"}
    e = reject(v, [missing_income, ok_row(age="30", extra=1), 7])
    found = {(err.row, err.feature, err.kind) for err in e.errors}
    assert found == {(0, "income", N.ERR_MISSING_FEATURE), (0, "city", N.ERR_UNSEEN_CATEGORY),
                     (1, "extra", N.ERR_UNKNOWN_FEATURE), (1, "age", N.ERR_WRONG_TYPE), (2, None, N.ERR_MALFORMED)}
    assert e.total == 5
