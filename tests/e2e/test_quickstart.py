"""The README's quickstart, run exactly as written: every fenced ``bash`` block that
follows a ``<!-- quickstart -->`` marker in README.md, in order, as one ``bash -e``
script in an empty directory.

The only change made to the text is the port: ``3000`` becomes a free port, so the run
never meets a server someone left on 3000. ``vigil`` and ``python`` on the script's PATH
are this checkout's (``python -m service.cli`` with the worktree on ``PYTHONPATH``), the
model store is the test session's private ``BENTOML_HOME``, the data directory a
temporary one. The server the script leaves running in the background is stopped with
its whole process group; every wait in the script is bounded by the run's timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- quickstart -->"
TIMEOUT = 120


def quickstart_blocks(readme: str) -> list[str]:
    """The ``bash`` blocks right after each quickstart marker."""
    return re.findall(re.escape(MARKER) + r"\s*```bash\n(.*?)```", readme, flags=re.S)


def _shims(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, target in (("python", f'exec "{sys.executable}" "$@"'),
                         ("vigil", f'exec "{sys.executable}" -m service.cli "$@"')):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{target}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_readme_has_a_quickstart_that_uses_your_own_model():
    blocks = quickstart_blocks((ROOT / "README.md").read_text())
    assert blocks, f"no ```bash block after {MARKER} in README.md"
    script = "\n".join(blocks)
    for step in ("vigil register", "vigil serve", "/predict", "/feedback", "vigil status"):
        assert step in script
    assert "3000" in script


def test_the_readme_quickstart_runs_as_written(tmp_path):
    port = free_port()
    script = "\n".join(quickstart_blocks((ROOT / "README.md").read_text())).replace("3000", str(port))
    work = tmp_path / "quickstart"
    work.mkdir()
    _shims(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "VIGIL_DATA_DIR": str(tmp_path / "data"), "BENTOML_DO_NOT_TRACK": "True"}
    started = time.monotonic()
    log_path = tmp_path / "quickstart.log"
    with open(log_path, "w") as log:  # a file, not a pipe: the server left running would hold a pipe open
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=TIMEOUT)
        took = time.monotonic() - started
    except subprocess.TimeoutExpired:
        pytest.fail(f"the quickstart did not finish in {TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
    finally:
        _stop_left_running(proc.pid)
    output = log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert re.search(r"^wine:\w+$", output, flags=re.M), output        # the tag vigil register prints
    assert '"predictions"' in output and '"accepted"' in output, output  # /predict and /feedback answered
    assert "drifted: alcohol" in output, output                         # vigil status saw the shift
    print(f"quickstart ran in {took:.1f} s (stopping the server it left: {time.monotonic() - started - took:.1f} s)")


def _stop_left_running(group: int) -> None:
    """SIGTERM what the script left running (bash itself on a timeout, the ``vigil serve
    ... &``, which became ``bentoml serve``, and its workers, which BentoML starts in
    sessions of their own), then SIGKILL whatever has not exited within 15 s."""
    import psutil

    left = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == group:
                left += [p, *p.children(recursive=True)]
        except (ProcessLookupError, psutil.Error):
            continue
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(left, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
