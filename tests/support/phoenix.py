"""Run a real Arize Phoenix server as an OTLP trace backend for end-to-end tests.

Phoenix lives in its own virtual environment (``.venv-phoenix`` at the repo root, see
``tests/support/PHOENIX.md`` for the install command) because its dependency tree is large
and pins OpenTelemetry/protobuf versions independently of Vigil's own environment.

Typical use::

    from tests.support.phoenix import phoenix_available, run_phoenix

    reason = phoenix_available()
    if reason:
        pytest.skip(reason)
    with run_phoenix(tmp_path) as phx:
        ...  # point the service at phx.otlp_http_traces_endpoint / phx.otlp_grpc_endpoint
        spans = phx.wait_for_spans(trace_id, min_count=2)

Only the standard library and httpx are used here, so the module can be imported from
Vigil's own test environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Virtual environment holding ``arize-phoenix``. ``VIGIL_TEST_PHOENIX_VENV`` overrides it.
PHOENIX_VENV = Path(os.environ.get("VIGIL_TEST_PHOENIX_VENV") or (REPO_ROOT / ".venv-phoenix"))

#: Bounded wait for the server to answer (a cold first start on 2 cores takes ~10-15 s).
STARTUP_TIMEOUT_S = 90.0
#: Grace period between SIGTERM and SIGKILL on shutdown (a clean stop takes ~2 s).
SHUTDOWN_GRACE_S = 10.0
#: How many times to retry with fresh ports if the chosen ones were grabbed meanwhile.
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 60

# Environment that keeps Phoenix local, offline and quiet. Verified against 20.26.1 (with
# strace: no outbound connect() at all during start-up, ingestion and queries).
_PHOENIX_ENV: dict[str, str] = {
    "PHOENIX_HOST": "127.0.0.1",
    # FullStory / Scarf.sh pixels in the web UI (server-side default: enabled).
    "PHOENIX_TELEMETRY_ENABLED": "false",
    # Master switch: no web fonts, telemetry, or WASM sandbox binary download at start-up.
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    "PHOENIX_ALLOWED_SANDBOX_PROVIDERS": "NONE",
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    "PHOENIX_ENABLE_MCP_SERVER": "false",
    # Migrations otherwise echo every SQL statement (thousands of log lines).
    "PHOENIX_LOG_MIGRATIONS": "false",
    "PYTHONUNBUFFERED": "1",
}


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def phoenix_available() -> str | None:
    """Return ``None`` if Phoenix can be started, else a human-readable reason (for skips)."""
    python = _venv_python(PHOENIX_VENV)
    if not PHOENIX_VENV.is_dir():
        return (
            f"Phoenix venv not found at {PHOENIX_VENV} "
            "(see tests/support/PHOENIX.md for how to create it)"
        )
    if not python.exists():
        return f"Phoenix venv at {PHOENIX_VENV} has no Python interpreter ({python})"
    if not os.access(python, os.X_OK):
        return f"Phoenix venv interpreter {python} is not executable"
    if (
        not any(PHOENIX_VENV.glob("lib*/python*/site-packages/phoenix/server/main.py"))
        and not (PHOENIX_VENV / "Lib/site-packages/phoenix/server/main.py").exists()
    ):
        return f"arize-phoenix is not installed in {PHOENIX_VENV}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_free_ports() -> tuple[int, int]:
    http_port = _free_port()
    grpc_port = _free_port()
    while grpc_port == http_port:
        grpc_port = _free_port()
    return http_port, grpc_port


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


def normalize_trace_id(trace_id: str | int) -> str:
    """Return a trace id as 32 lower-case hex digits (Phoenix stores and filters it so)."""
    if isinstance(trace_id, int):
        return format(trace_id, "032x")
    tid = trace_id.strip().lower()
    tid = tid.removeprefix("0x")
    return tid.rjust(32, "0")


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested attribute dicts to dotted keys. Lists are kept as they are.

    Phoenix 20.x already returns flat dotted keys; this only guards against releases that
    return the nested (``unflatten``-ed) form stored in the database.
    """
    out: dict[str, Any] = {}
    for key, val in value.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(val, Mapping):
            out.update(_flatten(val, full))
        else:
            out[full] = val
    return out


def _normalize_span(raw: Mapping[str, Any]) -> dict[str, Any]:
    context = raw.get("context") or {}
    return {
        "name": raw.get("name"),
        "trace_id": context.get("trace_id"),
        "span_id": context.get("span_id"),
        "parent_id": raw.get("parent_id"),
        "attributes": _flatten(raw.get("attributes") or {}),
        # Extras that are handy in assertions.
        "span_kind": raw.get("span_kind"),
        "status_code": raw.get("status_code"),
        "status_message": raw.get("status_message") or "",
        "start_time": raw.get("start_time"),
        "end_time": raw.get("end_time"),
        "events": raw.get("events") or [],
    }


class PhoenixError(RuntimeError):
    """Phoenix failed to start, died, or did not return the expected spans."""


class PhoenixServer:
    """Handle to a running Phoenix subprocess (yielded by :func:`run_phoenix`)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        http_port: int,
        grpc_port: int,
        working_dir: Path,
        log_path: Path,
    ) -> None:
        self.process = process
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.working_dir = working_dir
        self.log_path = log_path
        self.http_endpoint = f"http://127.0.0.1:{http_port}"
        self.otlp_http_traces_endpoint = f"{self.http_endpoint}/v1/traces"
        self.otlp_grpc_endpoint = f"http://127.0.0.1:{grpc_port}"
        # trust_env=False: never route loopback traffic through an HTTP(S)_PROXY.
        self._client = httpx.Client(base_url=self.http_endpoint, timeout=10.0, trust_env=False)

    # -- lifecycle -------------------------------------------------------------------------

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _log_tail(self.log_path, lines)

    def _check_alive(self) -> None:
        rc = self.process.poll()
        if rc is not None:
            raise PhoenixError(
                f"Phoenix exited with code {rc}; last log lines ({self.log_path}):\n"
                f"{self.log_tail()}"
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                # /readyz also checks the database; gRPC is started during app start-up,
                # before uvicorn binds the HTTP port, but check its socket too.
                if self._client.get("/readyz").status_code == 200 and _tcp_open(self.grpc_port):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PhoenixError(
                    f"Phoenix did not become ready on {self.http_endpoint} within {timeout:.0f} s;"
                    f" last log lines ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> int | None:
        """SIGTERM the server (its whole process group), SIGKILL after the grace period."""
        self._client.close()
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=SHUTDOWN_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout=SHUTDOWN_GRACE_S)
        return self.process.returncode

    # -- reading spans back ----------------------------------------------------------------

    def raw_spans(
        self, trace_id: str | int | None = None, project: str = "default"
    ) -> list[dict[str, Any]]:
        """All spans of ``project`` (optionally one trace) as Phoenix returns them.

        Follows ``next_cursor`` pagination; oldest first. A project that does not exist yet
        (no span has landed in it) yields ``[]``.
        """
        self._check_alive()
        params: dict[str, Any] = {"limit": 1000, "sort": "start_time", "order": "asc"}
        wanted = normalize_trace_id(trace_id) if trace_id is not None else None
        if wanted is not None:
            params["trace_id"] = wanted
        out: list[dict[str, Any]] = []
        while True:
            resp = self._client.get(f"/v1/projects/{project}/spans", params=params)
            if resp.status_code == 404:
                return []
            resp.raise_for_status()
            body = resp.json()
            for span in body.get("data") or []:
                # Filter client-side too: servers older than the `trace_id` query param
                # (added in 2026-03) silently ignore it and return every span.
                if wanted is None or (span.get("context") or {}).get("trace_id") == wanted:
                    out.append(span)
            cursor = body.get("next_cursor")
            if not cursor:
                return out
            params["cursor"] = cursor

    def spans(
        self, trace_id: str | int | None = None, project: str = "default"
    ) -> list[dict[str, Any]]:
        """Spans normalised to ``{name, trace_id, span_id, parent_id, attributes, ...}``.

        Ids are lower-case hex; ``attributes`` is a flat dict with dotted keys (resource
        attributes such as ``service.name`` are NOT returned by Phoenix).
        """
        return [_normalize_span(s) for s in self.raw_spans(trace_id, project)]

    def wait_for_spans(
        self,
        trace_id: str | int,
        min_count: int = 1,
        timeout: float = 60.0,
        project: str = "default",
    ) -> list[dict[str, Any]]:
        """Poll until at least ``min_count`` spans of ``trace_id`` are stored; return them."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while True:
            found = self.spans(trace_id, project)
            if len(found) >= min_count:
                return found
            if time.monotonic() > deadline:
                raise PhoenixError(
                    f"expected >= {min_count} spans for trace {normalize_trace_id(trace_id)} in "
                    f"project {project!r} within {timeout:.0f} s, got {len(found)}: "
                    f"{[s['name'] for s in found]}"
                )
            time.sleep(0.2)

    def projects(self) -> list[str]:
        self._check_alive()
        resp = self._client.get("/v1/projects", params={"limit": 1000})
        resp.raise_for_status()
        return [p["name"] for p in resp.json().get("data") or []]


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, sig)  # start_new_session=True: pgid == pid
        else:
            process.send_signal(sig)
    except ProcessLookupError:
        pass


def _start(tmp_path: Path, attempt: int, timeout: float) -> PhoenixServer:
    http_port, grpc_port = _two_free_ports()
    base = tmp_path / f"phoenix-{attempt}" if attempt else tmp_path / "phoenix"
    working_dir = base / "workdir"
    child_tmp = base / "tmp"  # Phoenix writes pid files under $TMPDIR/.arize-phoenix
    working_dir.mkdir(parents=True, exist_ok=True)
    child_tmp.mkdir(parents=True, exist_ok=True)
    log_path = base / "phoenix.log"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(_PHOENIX_ENV)
    env.update(
        {
            "PHOENIX_WORKING_DIR": str(working_dir),
            "PHOENIX_PORT": str(http_port),
            "PHOENIX_GRPC_PORT": str(grpc_port),
            "TMPDIR": str(child_tmp),
        }
    )
    cmd = [str(_venv_python(PHOENIX_VENV)), "-m", "phoenix.server.main", "serve"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            cwd=str(working_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PhoenixServer(process, http_port, grpc_port, working_dir, log_path)
    try:
        server._wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def run_phoenix(
    tmp_path: Path | str, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[PhoenixServer]:
    """Start Phoenix on free loopback ports with a private working dir under ``tmp_path``.

    Blocks (at most ``timeout`` seconds) until both the HTTP and gRPC ports answer.
    Raises :class:`PhoenixError` with the tail of Phoenix's log if it fails to start.
    """
    reason = phoenix_available()
    if reason:
        raise PhoenixError(reason)
    tmp_path = Path(tmp_path)
    server: PhoenixServer | None = None
    last_error: PhoenixError | None = None
    for attempt in range(_PORT_ATTEMPTS):
        try:
            server = _start(tmp_path, attempt, timeout)
            break
        except PhoenixError as exc:
            last_error = exc
            # Retry only an early exit (typically a port taken between pick and bind);
            # a start-up timeout will not get better with new ports.
            if "did not become ready" in str(exc):
                break
    if server is None:
        assert last_error is not None
        print(str(last_error), file=sys.stderr)
        raise last_error
    try:
        yield server
    finally:
        server.stop()
