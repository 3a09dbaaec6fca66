"""Operator free text is stored clean, listing views stay bounded, the spec can keep the
reference ranges private (issue 12 item 9)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from monitoring.schema import FeatureSpec, ModelSchema
from service.mounts import bounded
from service.schemas import AckBody, SilenceBody, display_text, instances_schema


@pytest.mark.parametrize("raw, clean", [
    ("<script>alert(1)</script>", "scriptalert(1)/script"),
    ("deploy \u202egnp.exe\u202c by ops", "deploy gnp.exe by ops"),
    ("nul\x00byte\x07", "nulbyte"),
    ("zero\u200bwidth", "zerowidth"),
    ("  many\n\n\tlines  ", "many lines"),
    ("Zürich 🟥 ok", "Zürich 🟥 ok"),
    ("\u200b\x00", None),
])
def test_free_text_is_stored_without_markup_or_invisible_characters(raw, clean):
    assert SilenceBody(rule="*", seconds=5, reason=raw, by=raw).reason == clean
    assert AckBody(rule="r", by=raw).by == (clean[:200] if clean else None)


def test_free_text_is_cut_to_its_column():
    assert len(display_text("x" * 5000, 1000)) == 1000


def test_a_silence_instance_with_invisible_characters_is_refused():
    with pytest.raises(ValidationError):
        SilenceBody(rule="*", seconds=5, instance="mean_radius\u202e")


def test_listing_views_are_cut_to_their_byte_budget():
    body = {"model": "m", "windows": [{"window_id": i, "pad": "x" * 1000} for i in range(100)]}
    out = bounded(body, "windows", budget=20_000)
    assert out["truncated"] and 0 < len(out["windows"]) < 20 and len(json.dumps(out)) <= 20_000
    assert [w["window_id"] for w in out["windows"]] == list(range(len(out["windows"])))  # newest first kept
    assert bounded(body, "windows", budget=10**6)["truncated"] is False


def test_reference_ranges_leave_the_spec_when_asked():
    schema = ModelSchema((FeatureSpec("x", "numeric", "float", minimum=1.5, maximum=9.25),
                          FeatureSpec("y", "numeric", "float", nullable=True, minimum=-3.0, maximum=3.0)),
                         task="regression")
    public = json.dumps(instances_schema(schema, 10, None))
    private = json.dumps(instances_schema(schema, 10, None, ranges=False))
    assert "9.25" in public and "-3" in public
    assert "9.25" not in private and "1.5" not in private and "-3" not in private
