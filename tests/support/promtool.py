"""Prometheus's own rule checker over a rules file we render (Debian's, unpacked by ``make``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import ROOT


def check_rules(text: str, directory: Path) -> None:
    """Fail the test unless ``promtool check rules`` accepts ``text``."""
    promtool = ROOT / ".tools/prometheus/usr/bin/promtool"
    if not promtool.exists() and shutil.which("promtool") is None:
        pytest.fail("promtool not found: run `make prometheus` (make test does)")
    f = directory / "rules.yml"
    f.write_text(text)
    out = subprocess.run([str(promtool) if promtool.exists() else "promtool", "check", "rules", str(f)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
