"""`bentoml build` with the project's bentofile makes a bento that serves the demo model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.server import ROOT, free_port, stop

pytestmark = pytest.mark.e2e


def test_bentofile_builds_a_working_bento(tmp_path, demo_tags, demo_rows):
    env = {**os.environ, "VIGIL_MODEL": demo_tags["classifier"]}
    out = subprocess.run([sys.executable, "-m", "bentoml", "build", str(ROOT), "--output", "tag"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    tag = re.search(r"__tag__:(\S+)", out.stdout).group(1)
    info = subprocess.run([sys.executable, "-m", "bentoml", "get", tag, "-o", "json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert demo_tags["classifier"] in info.stdout  # the model travels inside the bento
    for attempt in range(3):  # a port taken between choosing and binding it: another one
        port = free_port()
        log_path = tmp_path / f"bento-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1",
                                     "--port", str(port)], cwd=tmp_path,
                                    env={**env, "VIGIL_DATA_DIR": str(tmp_path / "data")},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if proc.poll() is None or attempt == 2 or "Could not bind" not in log_path.read_text():
            break
    try:
        started = proc.poll() is None and time.monotonic() < deadline
        assert started, f"bento did not start:\n{log_path.read_text()[-3000:]}"
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"instances": demo_rows[:2]}, timeout=30)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    finally:
        stop(proc)
