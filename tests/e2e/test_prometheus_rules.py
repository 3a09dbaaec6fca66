"""The exported alerting rules, loaded into Debian's Prometheus scraping a served Vigil:
quiet on clean traffic, the drift rule fires on drifted traffic.

Prometheus comes from Debian's package, unpacked into ``.tools/prometheus`` by ``make
prometheus`` (part of ``make test``); ``VIGIL_TEST_PROMETHEUS`` may name another binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.server import ROOT, free_port, serve, stop

pytestmark = pytest.mark.e2e
SHIFTED = "mean_texture"


def prometheus_binary() -> str:
    candidates = [os.environ.get("VIGIL_TEST_PROMETHEUS"), str(ROOT / ".tools/prometheus/usr/bin/prometheus"),
                  shutil.which("prometheus")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail("Prometheus not found: run `make prometheus` (or `make test`), or set VIGIL_TEST_PROMETHEUS")


def firing(prom: str, name: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()
    return [a for a in r["data"]["alerts"] if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_prometheus_fires_the_exported_drift_rule(tmp_path, demo_tags, demo_rows, demo_tags_reference_sd):
    binary = prometheus_binary()
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "40", "VIGIL_WINDOW_SECONDS": "2"}
    rules = tmp_path / "vigil-rules.yml"
    out = subprocess.run([sys.executable, "-m", "service.cli", "alerts", "export-prometheus", "-o", str(rules)],
                         cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = rules.read_text()
    assert "alert: vigil_feature_drift" in text and "vigil_drift_score >= 1" in text
    check = subprocess.run([str(Path(binary).with_name("promtool")), "check", "rules", str(rules)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr

    rng = np.random.default_rng(2)
    with serve(tmp_path, env) as server, server.client() as c:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: vigil
    static_configs: [{{targets: ["{server.url.split('//')[1]}"]}}]
""")
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        prom = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
                time.sleep(0.3)
            loaded = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
            assert "vigil_feature_drift" in {r["name"] for r in loaded}

            def send(shift: float, seconds: float, until=None) -> bool:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    batch = [dict(demo_rows[i]) for i in rng.integers(0, len(demo_rows), size=20)]
                    for r in batch:
                        r[SHIFTED] += shift
                    assert c.post("/predict", json={"instances": batch}).status_code == 200
                    time.sleep(0.1)
                    if until is not None and until():
                        return True
                return False

            send(0.0, 12)                                    # clean traffic: windows close, scraped, judged
            up = httpx.get(f"{prom}/api/v1/query", params={"query": "vigil_windows_closed_total"}, timeout=5).json()
            assert float(up["data"]["result"][0]["value"][1]) >= 3, up
            assert firing(prom, "vigil_feature_drift") == []
            shift = 3 * demo_tags_reference_sd[SHIFTED]
            assert send(shift, 60, until=lambda: firing(prom, "vigil_feature_drift")), \
                httpx.get(f"{prom}/api/v1/alerts", timeout=5).text
            alerts = firing(prom, "vigil_feature_drift")
        finally:
            stop(proc)
            log.close()
    assert {a["labels"]["feature"] for a in alerts} == {SHIFTED}
    assert alerts[0]["labels"]["severity"] == "warning" and alerts[0]["labels"]["vigil_rule"] == "feature_drift"
