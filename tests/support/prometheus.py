"""Debian's Prometheus for end-to-end tests (``make prometheus`` unpacks it into
``.tools/prometheus``; ``VIGIL_TEST_PROMETHEUS`` may name another binary)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.support.server import ROOT, free_port, stop


def prometheus_binary() -> str:
    candidates = [os.environ.get("VIGIL_TEST_PROMETHEUS"), str(ROOT / ".tools/prometheus/usr/bin/prometheus"),
                  shutil.which("prometheus")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail("Prometheus not found: run `make prometheus` (or `make test`), or set VIGIL_TEST_PROMETHEUS")


@contextlib.contextmanager
def run_prometheus(tmp: Path, targets: dict[str, str], scrape_interval: str = "1s") -> Iterator[str]:
    """Prometheus scraping ``targets`` (``model`` label -> ``host:port``) every
    ``scrape_interval``; yields its base URL once it is ready."""
    binary = prometheus_binary()
    for attempt in range(3):  # a port taken between choosing and binding it: another one
        try:
            with _run_once(binary, tmp, targets, scrape_interval) as url:
                yield url
            return
        except _PortTaken:
            if attempt == 2:
                raise


class _PortTaken(RuntimeError):
    pass


@contextlib.contextmanager
def _run_once(binary: str, tmp: Path, targets: dict[str, str], scrape_interval: str) -> Iterator[str]:
    port = free_port()
    jobs = "\n".join(f"""      - targets: ["{hostport}"]
        labels: {{model: "{model}"}}""" for model, hostport in targets.items())
    cfg = tmp / "prometheus.yml"
    cfg.write_text(f"""
global: {{scrape_interval: {scrape_interval}, evaluation_interval: {scrape_interval}}}
scrape_configs:
  - job_name: vigil
    static_configs:
{jobs}
""")
    log_path = tmp / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None and "address already in use" in log_path.read_text():
                raise _PortTaken(f"port {port} was taken before Prometheus bound it")
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)
