"""Start a real ``bentoml serve`` of Vigil for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)


def descendants(pid: int) -> list:
    """The server's processes below ``pid``. BentoML starts each worker in a session of its
    own, so signalling the server's process group does not reach them."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_hard(proc: subprocess.Popen) -> None:
    """``kill -9`` the whole server: supervisor and every worker, no shutdown hooks."""
    kids = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for k in kids:
        with contextlib.suppress(Exception):
            k.kill()
    proc.wait(10)


def stop(proc: subprocess.Popen, timeout: float = 15) -> float:
    """SIGTERM the server's process group; SIGKILL if it does not exit in time; then make
    sure no worker outlives it. Returns seconds taken."""
    import psutil

    start = time.monotonic()
    kids = descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    _, alive = psutil.wait_procs(kids, timeout=max(1.0, timeout - (time.monotonic() - start)))
    for k in alive:
        with contextlib.suppress(Exception):
            k.kill()
    return time.monotonic() - start


@contextlib.contextmanager
def serve(tmp_path: Path, env: dict[str, str] | None = None, ready_timeout: float = 90) -> Iterator[Server]:
    """Serve ``service:MonitoredModel`` on a free 127.0.0.1 port with ``env`` added. A port
    taken between choosing and binding it (another server of the suite) is retried."""
    for attempt in range(3):
        try:
            with _serve_once(tmp_path, env, ready_timeout) as server:
                yield server
            return
        except _PortTaken:
            if attempt == 2:
                raise


class _PortTaken(RuntimeError):
    pass


@contextlib.contextmanager
def _serve_once(tmp_path: Path, env: dict[str, str] | None, ready_timeout: float) -> Iterator[Server]:
    port = free_port()
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "VIGIL_DATA_DIR": str(tmp_path / "data"),
                "PYTHONUNBUFFERED": "1", **(env or {})}
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "service:MonitoredModel", "--host", "127.0.0.1",
             "--port", str(port), "--working-dir", str(ROOT)],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                if "Could not bind" in server.log():
                    raise _PortTaken(f"port {port} was taken before the server bound it")
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()[-4000:]}")
            try:
                if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {ready_timeout}s:\n{server.log()[-4000:]}")
            time.sleep(0.3)
        yield server
    finally:
        stop(proc)
