"""The one finite-float rule (``monitoring.values``), and that no module keeps its own copy."""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitoring.values import finite_or_none, json_ready

from tests.support.paths import ROOT  # noqa: E402


def test_finite_or_none_keeps_finite_numbers_and_drops_the_rest():
    assert finite_or_none(3) == 3.0 and isinstance(finite_or_none(3), float)
    assert finite_or_none(np.float32(0.5)) == 0.5
    assert finite_or_none(-0.0) == 0.0
    for v in (None, math.nan, math.inf, -math.inf, np.float64("nan")):
        assert finite_or_none(v) is None


def test_json_ready_turns_results_into_plain_json():
    @dataclass(frozen=True)
    class R:
        a: float
        b: tuple

    out = json_ready({"r": R(np.float64(math.inf), (np.int64(2), 1.5)), "k": [math.nan]})
    assert out == {"r": {"a": None, "b": [2, 1.5]}, "k": [None]}
    assert json.loads(json.dumps(out)) == out


def _isfinite_helpers(path: Path) -> list[str]:
    """Functions of one parameter whose body returns the parameter or None by a finiteness test."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and len(node.args.args) == 1:
            src = ast.unparse(node)
            if ("isfinite" in src or "float('inf')" in src or "v == v" in src) and "return None" in src \
                    and "np.isfinite" not in src:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return out


def test_no_module_keeps_its_own_finite_helper():
    found = [h for pkg in ("monitoring", "service", "models") for p in sorted((ROOT / pkg).rglob("*.py"))
             if p != ROOT / "monitoring/values.py" for h in _isfinite_helpers(p)]
    assert found == []
