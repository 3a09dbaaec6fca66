"""Schema inference merges per-chunk answers into one that does not depend on the chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import models.data
from models.registry import RegistrationError, load, register
from models.schema_inference import merge_spec
from monitoring.schema import MAX_CATEGORIES, FeatureSpec, infer_feature_specs


def spec_of(values, name="c") -> FeatureSpec:
    (spec,) = infer_feature_specs(pd.DataFrame({name: values}))
    return spec


def test_int_and_float_chunks_merge_to_a_float_with_the_joint_range():
    merged = merge_spec(spec_of([1, 5]), spec_of([0.5, np.nan]))
    assert (merged.kind, merged.dtype, merged.nullable, merged.minimum, merged.maximum) == ("numeric", "float", True,
                                                                                            0.5, 5.0)


@pytest.mark.parametrize("order", ["missing first", "missing last"])
def test_a_chunk_where_a_text_column_is_all_missing_takes_the_text_kind(order):
    empty, text = spec_of([np.nan, np.nan]), spec_of(["b", "a"])
    assert empty.kind == "numeric"  # what a CSV chunk of empty cells reads as
    merged = merge_spec(empty, text) if order == "missing first" else merge_spec(text, empty)
    assert (merged.kind, merged.dtype, merged.nullable, merged.categories) == ("categorical", "str", True, ("a", "b"))


def test_numbers_in_one_chunk_and_text_in_another_is_one_clear_error():
    with pytest.raises(RegistrationError, match="column 'c' holds numbers in some rows and text in others"):
        merge_spec(spec_of([1.5]), spec_of(["x"]))


def test_categories_of_different_types_merge_as_text_like_a_single_pass():
    merged = merge_spec(spec_of([True, False]), spec_of(["maybe"]))
    single = spec_of([True, False, "maybe"])
    assert (merged.dtype, merged.categories) == (single.dtype, single.categories) == ("str", ("False", "True", "maybe"))


def test_too_many_categories_over_all_chunks_keep_no_list_and_take_unseen_values():
    half = MAX_CATEGORIES // 2 + 1
    first, second = spec_of([f"a{i}" for i in range(half)]), spec_of([f"b{i}" for i in range(half)])
    merged = merge_spec(first, second)
    assert merged.categories == () and merged.accepts_unseen
    later = merge_spec(merged, spec_of(["a0"]))  # a small chunk after the overflow does not bring a list back
    assert later.categories == () and later.accepts_unseen


def test_a_csv_text_column_empty_in_the_first_chunk_registers_as_categorical(bentoml_home, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    n = 200
    frame = pd.DataFrame({"x": rng.normal(size=n), "tier": rng.choice(["gold", "silver"], size=n).astype(object)})
    frame.loc[:59, "tier"] = None  # the first 50-row chunk has no tier at all
    frame["label"] = (frame["x"] > 0).astype(int)
    frame.to_csv(tmp_path / "train.csv", index=False)
    encode = ColumnTransformer([("tier", OneHotEncoder(handle_unknown="ignore"), ["tier"])], remainder="passthrough")
    filled = frame.assign(tier=frame["tier"].fillna("none"))
    model = make_pipeline(encode, LogisticRegression()).fit(filled[["x", "tier"]], filled["label"])
    monkeypatch.setattr(models.data, "CHUNK_ROWS", 50)
    m = load(register(None, tmp_path / "train.csv", "label", model=model, name="late-text").tag)
    tier = {f.name: f for f in m.schema.features}["tier"]
    assert (tier.kind, tier.dtype, tier.nullable, tier.categories) == ("categorical", "str", True, ("gold", "silver"))
    assert m.profile.rows == n
