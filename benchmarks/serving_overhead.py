#!/usr/bin/env python3
"""Vigil's serving overhead against bare BentoML serving the same model.

Two servers on free 127.0.0.1 ports, one worker each:

- ``bare``:  ``benchmarks/_bare_service.py``, a minimal ``@bentoml.service`` that loads the
  stored estimator and calls ``predict_proba`` (what one would write without Vigil);
- ``vigil``: ``bentoml serve service:MonitoredModel`` with ``VIGIL_MODEL`` = the same tag.

Both are driven with the same closed-loop load (``--concurrency`` keep-alive connections,
single-row requests cycling through the demo classifier's validation split) from a
separate process (``wrk`` when installed, else a small asyncio client), for
``--duration`` seconds per run after a warm-up, interleaving bare, vigil, bare, vigil, ...
Medians over ``--runs`` runs of req/s, p50 and p99 latency are printed with the
vigil/bare ratios, in two modes:

- ``off``: no ``OTEL_*`` variables (Vigil samples nothing; the bare service has no tracing);
- ``on``:  every request traced and exported over OTLP/HTTP to a sink inside this process
  (both servers: ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_EXPORTER=otlp``,
  ``OTEL_METRICS_EXPORTER=none``; the bare service also sets BentoML's own
  ``tracing`` config, sample rate 1.0). Span counts received per service are printed.

Targets (reported, never asserted; the exit status is 0 unless setup fails): with every
request traced, req/s ratio >= 0.90 and p50 ratio <= 1.10.

    .venv/bin/python benchmarks/serving_overhead.py                 # full: 5 x 10 s per server per mode
    .venv/bin/python benchmarks/serving_overhead.py --runs 2 --duration 5 --modes on
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
TARGET_RPS_RATIO = 0.90
TARGET_P50_RATIO = 1.10
OTHER_LOAD_WARN = 0.25  # cores
KINDS = ("bare", "vigil")


# -- small helpers -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(msg, flush=True)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_post_json(url: str, payload: dict, timeout: float = 10.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"body": e.read()[:500].decode(errors="replace")}


# -- OTLP/HTTP sink ------------------------------------------------------------------------

class OtlpSink:
    """Accepts ``POST /v1/traces``, answers 200 with an empty protobuf body, keeps the bodies.

    Runs on a thread of the benchmark process (never inside the servers). Bodies are only
    decoded (to count spans per service) when :meth:`summary` is called, between runs.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts = 0
        self.bytes = 0
        self.other = 0
        self._bodies: list[bytes] = []
        self.last_post = 0.0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector would

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                ok = self.path.rstrip("/") == "/v1/traces"
                with sink.lock:
                    if ok:
                        sink.posts += 1
                        sink.bytes += len(body)
                        sink._bodies.append(body)
                        sink.last_post = time.monotonic()
                    else:
                        sink.other += 1
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-sink", daemon=True)
        self.thread.start()
        self.spans: dict[str, int] = {}
        self.names: dict[str, dict[str, int]] = {}

    def _decode_pending(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        with self.lock:
            bodies, self._bodies = self._bodies, []
        for body in bodies:
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                svc = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "?")
                names = self.names.setdefault(svc, {})
                for ss in rs.scope_spans:
                    self.spans[svc] = self.spans.get(svc, 0) + len(ss.spans)
                    for sp in ss.spans:
                        names[sp.name] = names.get(sp.name, 0) + 1

    def settle(self, quiet: float = 2.0, limit: float = 15.0) -> None:
        """Wait until no export has arrived for ``quiet`` seconds (batch processors flush every 5 s)."""
        deadline = time.monotonic() + limit
        time.sleep(quiet)
        while time.monotonic() < deadline:
            with self.lock:
                idle = time.monotonic() - self.last_post
            if idle >= quiet:
                break
            time.sleep(0.5)

    def summary(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        self._decode_pending()
        return dict(self.spans), {k: dict(v) for k, v in self.names.items()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- servers -------------------------------------------------------------------------------

@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    pgids: set[int] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tree(self):
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for p in procs:
            self.pids.add(p.pid)
            with contextlib.suppress(Exception):
                self.pgids.add(os.getpgid(p.pid))
        return procs

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(Exception):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _signal_all(server: Server, sig: int) -> None:
    # The supervisor's own group first (start_new_session: pgid == pid); the worker that
    # circus spawns sits in a session of its own, so its group is signalled too.
    for pgid in {server.proc.pid, *server.pgids}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in server.pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_server(server: Server, timeout: float = 15.0) -> None:
    import psutil

    server.tree()  # refresh the set of pids / groups to signal
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and _alive(p) for p in server.pids):
        time.sleep(0.2)
    if server.proc.poll() is None or any(psutil.pid_exists(p) and _alive(p) for p in server.pids):
        _signal_all(server, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(10)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Servers:
    """Every server started, so that all of them are stopped whatever happens."""

    def __init__(self) -> None:
        self.live: list[Server] = []

    def start(self, kind: str, env: dict[str, str], log_dir: Path) -> Server:
        port = free_port()
        log_path = log_dir / f"{kind}-{port}.log"
        if kind == "bare":
            cmd = [sys.executable, "-m", "bentoml", "serve", "_bare_service:BareModel", "--host", "127.0.0.1",
                   "--port", str(port), "--working-dir", str(BENCH_DIR)]
            cwd = BENCH_DIR
        else:
            cmd = [sys.executable, "-m", "bentoml", "serve", "service:MonitoredModel", "--host", "127.0.0.1",
                   "--port", str(port), "--working-dir", str(ROOT)]
            cwd = ROOT
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        server = Server(kind, port, proc, log_path)
        self.live.append(server)
        return server

    def wait_ready(self, server: Server, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.kind} server exited with {server.proc.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError):
                if http_get(server.url + "/readyz")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.kind} server not ready in {timeout:.0f}s:\n{server.log_tail()}")
            time.sleep(0.3)
        server.tree()

    def stop_all(self) -> None:
        while self.live:
            server = self.live.pop()
            try:
                stop_server(server)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log(f"warning: stopping {server.kind} (pid {server.proc.pid}) raised {exc!r}")
                _signal_all(server, signal.SIGKILL)


# -- load generation -----------------------------------------------------------------------

@dataclass
class RunResult:
    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms_per_req: float | None = None
    other_cores: float = 0.0  # CPU used on the box by anything but the servers and this benchmark


def busy_cpu_seconds() -> float:
    """Non-idle CPU seconds of the whole machine so far."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (the load generator)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


_WRK_LUA = r"""
local bodies = {
%s
}
local reqs = {}
local i = 0
init = function(args)
  local headers = { ["Content-Type"] = "application/json" }
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "/predict", headers, b)
  end
end
request = function()
  i = i %% #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'VIGIL_BENCH {"requests": %%d, "duration_us": %%d, "errors": %%d, "status_errors": %%d, "p50_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def write_wrk_script(path: Path, bodies: list[str]) -> None:
    for b in bodies:
        assert "]==]" not in b
    path.write_text(_WRK_LUA % ",\n".join(f"[==[{b}]==]" for b in bodies))


def run_load(loadgen: str, url: str, duration: float, concurrency: int, threads: int, wrk_script: Path,
             bodies_path: Path) -> dict:
    if loadgen == "wrk":
        cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration:g}s", "--timeout", "30s",
               "-s", str(wrk_script), url + "/predict"]
    else:
        cmd = [sys.executable, __file__, "--_loadgen", url + "/predict", "--_bodies", str(bodies_path),
               "--duration", str(duration), "--concurrency", str(concurrency)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=duration + 120)
    for line in out.stdout.splitlines():
        if line.startswith("VIGIL_BENCH "):
            return json.loads(line[len("VIGIL_BENCH "):])
    raise RuntimeError(f"load generator gave no result (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def python_loadgen(url: str, bodies_path: Path, duration: float, concurrency: int) -> None:
    """Fallback closed-loop client: raw HTTP/1.1 keep-alive over asyncio streams."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port, parts.path
    bodies = json.loads(bodies_path.read_text())
    reqs = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
             f"Content-Length: {len(b.encode())}\r\n\r\n{b}").encode() for b in bodies]
    lat: list[float] = []
    counts = {"errors": 0, "status_errors": 0}

    async def conn(k: int, stop_at: float) -> None:
        i = k
        reader = writer = None
        while time.perf_counter() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                t0 = time.perf_counter()
                writer.write(reqs[i % len(reqs)])
                i += concurrency
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                t1 = time.perf_counter()
                if t1 <= stop_at:
                    lat.append(t1 - t0)
                    if not 200 <= status < 400:
                        counts["status_errors"] += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                counts["errors"] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(conn(k, start + duration) for k in range(concurrency)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6 if lat else 0.0

    print("VIGIL_BENCH " + json.dumps({"requests": len(lat), "duration_us": min(elapsed, duration) * 1e6,
                                       "errors": counts["errors"], "status_errors": counts["status_errors"],
                                       "p50_us": pct(0.50), "p99_us": pct(0.99)}), flush=True)


# -- the benchmark -------------------------------------------------------------------------

def base_env(home: Path, data_dir: Path, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "VIGIL_", "BENTOML_")) and k != "PYTHONPATH"}
    env.update({"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "VIGIL_DATA_DIR": str(data_dir),
                "VIGIL_MODEL": tag, "VIGIL_WORKERS": "1", "VIGIL_BENCH_MODEL": tag, "PYTHONUNBUFFERED": "1"})
    return env


def mode_env(env: dict[str, str], mode: str, sink: OtlpSink | None) -> dict[str, str]:
    env = dict(env)
    env["VIGIL_DATA_DIR"] = f"{env['VIGIL_DATA_DIR']}-{mode}"  # a fresh store per mode
    if mode == "on":
        assert sink is not None
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                    "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
                    "VIGIL_BENCH_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}/v1/traces"})
    return env


def ensure_model(home: Path) -> str:
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    sys.path.insert(0, str(ROOT))
    import bentoml

    from models.demo import CLASSIFIER, register_demo

    try:
        return str(bentoml.models.get(f"{CLASSIFIER}:latest").tag)
    except bentoml.exceptions.NotFound:
        log(f"registering the demo classifier in {home} ...")
        return register_demo("classifier").tag


def demo_bodies() -> list[str]:
    from models.demo import TARGET, demo_frames

    _, valid = demo_frames("classifier")
    rows = valid.drop(columns=[TARGET]).to_dict(orient="records")
    return [json.dumps({"instances": [{k: float(v) for k, v in row.items()}]}, separators=(",", ":")) for row in rows]


def sanity_check(servers: list[Server], bodies: list[str]) -> None:
    """Both servers answer 200 with the same predictions for a few rows."""
    for body in bodies[:5]:
        payload = json.loads(body)
        answers = {}
        for s in servers:
            status, out = http_post_json(s.url + "/predict", payload)
            if status != 200:
                raise RuntimeError(f"{s.kind} /predict answered {status}: {out}\n{s.log_tail()}")
            answers[s.kind] = (out["predictions"], [[round(p, 9) for p in r] for r in out["probabilities"]])
        if len({json.dumps(a) for a in answers.values()}) != 1:
            raise RuntimeError(f"servers disagree on {body[:80]}...: {answers}")


def fmt_ratio(x: float) -> str:
    return f"{x:.3f}"


def run_mode(mode: str, args, env0: dict[str, str], servers: Servers, sink: OtlpSink | None, log_dir: Path,
             bodies: list[str], wrk_script: Path, bodies_path: Path, record: dict) -> None:
    """Run one mode, filling ``record`` as it goes (so an interrupted run still reports)."""
    log(f"\n=== mode: tracing {mode.upper()} ===")
    env = mode_env(env0, mode, sink)
    started = {k: servers.start(k, {**env, **(args.vigil_env if k == "vigil" else {})}, log_dir) for k in KINDS}
    for s in started.values():
        servers.wait_ready(s)
        log(f"  {s.kind:5s} ready on {s.url} (pids {sorted(s.pids)})")
    sanity_check(list(started.values()), bodies)
    sent = record["sent"] = {k: 0 for k in KINDS}
    for k in KINDS:  # warm-up: JIT-free Python, but caches, pools, lazy imports, BSP threads
        r = run_load(args.loadgen, started[k].url, args.warmup, args.concurrency, args.threads, wrk_script, bodies_path)
        sent[k] += r["requests"]
        log(f"  warm-up {k:5s}: {r['requests'] / (r['duration_us'] / 1e6):8.1f} req/s")
    results: dict[str, list[RunResult]] = record["results"]
    for i in range(args.runs):
        for k in KINDS:
            time.sleep(args.pause)
            s = started[k]
            others = [o for o in started.values() if o is not s]
            cpu0, ocpu0 = s.cpu_seconds(), sum(o.cpu_seconds() for o in others)
            busy0, own0, t0 = busy_cpu_seconds(), own_cpu_seconds(), time.monotonic()
            r = run_load(args.loadgen, s.url, args.duration, args.concurrency, args.threads, wrk_script, bodies_path)
            cpu1, ocpu1 = s.cpu_seconds(), sum(o.cpu_seconds() for o in others)
            busy1, own1, t1 = busy_cpu_seconds(), own_cpu_seconds(), time.monotonic()
            foreign = (busy1 - busy0) - (cpu1 - cpu0) - (ocpu1 - ocpu0) - (own1 - own0)
            sent[k] += r["requests"]
            secs = r["duration_us"] / 1e6
            rr = RunResult(k, r["requests"] / secs, r["p50_us"] / 1e3, r["p99_us"] / 1e3, r["requests"],
                           r["errors"] + r["status_errors"],
                           (cpu1 - cpu0) * 1e3 / r["requests"] if r["requests"] else None,
                           max(0.0, foreign / (t1 - t0)))
            results[k].append(rr)
            log(f"  run {i + 1}/{args.runs} {k:5s}: {rr.rps:8.1f} req/s  p50 {rr.p50_ms:6.2f} ms  "
                f"p99 {rr.p99_ms:6.2f} ms  server CPU {rr.cpu_ms_per_req:.3f} ms/req  errors {rr.errors}  "
                f"other load {rr.other_cores:.2f} cores")
    if sink is not None:  # let the batch span processors (5 s schedule) export while the servers are up
        sink.settle(quiet=6.0, limit=30.0)
    if mode == "on":
        status, body = http_get(started["vigil"].url + "/monitoring/status")
        if status == 200:
            st = json.loads(body)
            record["vigil_status"] = {"telemetry": st.get("telemetry"), "monitor_queue": st.get("monitor_queue")}
    for k in KINDS:
        stop_server(started[k])
        servers.live.remove(started[k])
    if sink is not None:
        sink.settle(quiet=1.0, limit=10.0)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(all_modes: list[dict], sink: OtlpSink | None, args) -> None:
    log("\n" + "=" * 96)
    log(f"Vigil serving overhead vs bare BentoML: 1 worker each, {args.concurrency} connections, single-row "
        f"requests, {args.runs} x {args.duration:g} s per server per mode (medians), load generator: {args.loadgen}")
    if args.vigil_env:
        log("Vigil server's extra environment: " + " ".join(f"{k}={v}" for k, v in args.vigil_env.items()))
    log("=" * 96)
    hdr = (f"{'tracing':8s} {'server':6s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU ms/req':>11s} "
           f"{'errors':>7s} {'other':>6s}   runs req/s")
    log(hdr)
    log("-" * len(hdr))
    verdicts = []
    worst_other = 0.0
    for m in all_modes:
        res = m["results"]
        meds = {}
        for k in KINDS:
            rs = res[k]
            meds[k] = (med([r.rps for r in rs]), med([r.p50_ms for r in rs]), med([r.p99_ms for r in rs]),
                       med([r.cpu_ms_per_req for r in rs if r.cpu_ms_per_req is not None]),
                       sum(r.errors for r in rs))
            runs = " ".join(f"{r.rps:.0f}" for r in rs)
            other = med([r.other_cores for r in rs])
            worst_other = max(worst_other, max((r.other_cores for r in rs), default=0.0))
            log(f"{m['mode'].upper():8s} {k:6s} {meds[k][0]:9.1f} {meds[k][1]:8.2f} {meds[k][2]:8.2f} "
                f"{meds[k][3]:11.3f} {meds[k][4]:7d} {other:6.2f}   {runs}")
        b, v = meds["bare"], meds["vigil"]
        rps_r, p50_r, p99_r, cpu_r = v[0] / b[0], v[1] / b[1], v[2] / b[2], v[3] / b[3]
        log(f"{m['mode'].upper():8s} {'ratio':6s} {fmt_ratio(rps_r):>9s} {fmt_ratio(p50_r):>8s} "
            f"{fmt_ratio(p99_r):>8s} {fmt_ratio(cpu_r):>11s}   (vigil / bare, ratio of medians)")
        pairs = list(zip(res["bare"], res["vigil"]))
        log(f"{'':8s} {'paired':6s} {fmt_ratio(med([v.rps / b.rps for b, v in pairs])):>9s} "
            f"{fmt_ratio(med([v.p50_ms / b.p50_ms for b, v in pairs])):>8s} "
            f"{fmt_ratio(med([v.p99_ms / b.p99_ms for b, v in pairs])):>8s} "
            f"{fmt_ratio(med([v.cpu_ms_per_req / b.cpu_ms_per_req for b, v in pairs])):>11s}   "
            "(median of per-round vigil / bare)")
        log("-" * len(hdr))
        verdicts.append((m["mode"], rps_r, p50_r))
    log("CPU ms/req: user+system CPU time of the server's processes (supervisor and worker) per completed "
        "request;\nother: median CPU cores used on this machine by processes other than the two servers and "
        "the benchmark\n(with its load generator) during the runs; ratios are vigil / bare, so req/s wants >= 1 "
        "and latency / CPU want <= 1.")
    if worst_other > OTHER_LOAD_WARN:
        log(f"WARNING: other processes used up to {worst_other:.2f} CPU cores during some runs: req/s and latency "
            "are then\nskewed (both servers share the CPU with them); rerun on a quiet machine, or trust CPU ms/req "
            "more.")
    if sink is not None and any(m["mode"] == "on" for m in all_modes):
        spans, names = sink.summary()
        m_on = next(m for m in all_modes if m["mode"] == "on")
        log(f"\nOTLP sink (tracing ON): {sink.posts} POST /v1/traces, {sink.bytes / 1e6:.1f} MB, "
            f"{sink.other} other requests")
        svc_of = {"bare": "bare", "vigil": "vigil"}
        for k in KINDS:
            n = spans.get(svc_of[k], 0)
            sent = m_on["sent"][k]
            top = ", ".join(f"{name} {c}" for name, c in sorted(names.get(svc_of[k], {}).items(),
                                                                 key=lambda kv: -kv[1])[:8])
            roots = names.get(svc_of[k], {}).get("POST /predict", 0)
            verdict = ("every request traced" if sent and roots >= sent else
                       f"{sent - roots} requests WITHOUT a server span")
            log(f"  {k:5s}: {n} spans for {sent} requests counted by the load generator "
                f"({n / sent if sent else 0:.2f} spans/request); {roots} 'POST /predict' server spans: {verdict}\n"
                f"         by name: {top}")
        others = {s: c for s, c in spans.items() if s not in svc_of.values()}
        if others:
            log(f"  other service.name values: {others}")
        if "vigil_status" in m_on:
            log(f"  vigil /monitoring/status: {json.dumps(m_on['vigil_status'])}")
    log("\nTargets (with every request traced): req/s ratio >= "
        f"{TARGET_RPS_RATIO:.2f}, p50 ratio <= {TARGET_P50_RATIO:.2f}")
    for mode, rps_r, p50_r in verdicts:
        ok_rps, ok_p50 = rps_r >= TARGET_RPS_RATIO, p50_r <= TARGET_P50_RATIO
        label = "tracing ON " if mode == "on" else "tracing OFF"
        note = "" if mode == "on" else "   (informational: the targets are for tracing ON)"
        if worst_other > OTHER_LOAD_WARN:
            note += "   [NOT CONCLUSIVE: busy machine]"
        log(f"  {label}: req/s ratio {rps_r:.3f} {'MEETS' if ok_rps else 'MISSES'} target; "
            f"p50 ratio {p50_r:.3f} {'MEETS' if ok_p50 else 'MISSES'} target{note}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="measured runs per server per mode (default 5)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds per server per mode (default 5)")
    p.add_argument("--concurrency", type=int, default=8, help="keep-alive connections (default 8)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1; the box has few cores)")
    p.add_argument("--modes", default="off,on", help="comma-separated subset of off,on (default off,on)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of idle between runs (default 1)")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="wrk if installed (auto), or the built-in asyncio client")
    p.add_argument("--bentoml-home", type=Path, help="existing BentoML home (default: a temporary one)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with server logs")
    p.add_argument("--vigil-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the Vigil server only, e.g. VIGIL_INLINE_PREDICT_MS=0 "
                        "(every /predict in the thread pool, as the bare service); repeatable")
    p.add_argument("--_loadgen", help=argparse.SUPPRESS)
    p.add_argument("--_bodies", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bad_env = [e for e in args.vigil_env if "=" not in e]
    if bad_env:
        p.error(f"--vigil-env takes NAME=VALUE; got {bad_env}")
    args.vigil_env = dict(e.split("=", 1) for e in args.vigil_env)
    args.modes = [m.strip().lower() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in ("off", "on")]
    if bad or not args.modes:
        p.error(f"--modes takes off and/or on; got {args.modes}")
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        p.error("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._loadgen:
        python_loadgen(args._loadgen, args._bodies, args.duration, args.concurrency)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    home = args.bentoml_home.resolve() if args.bentoml_home else tmp / "bentoml-home"
    data_dir = tmp / "vigil-data"
    log_dir = tmp / "logs"
    log_dir.mkdir(parents=True)
    servers = Servers()
    sink: OtlpSink | None = None

    interrupted = []

    def on_term(signum, frame):
        if not interrupted:  # the first signal interrupts; later ones must not break the cleanup
            interrupted.append(signum)
            raise KeyboardInterrupt(f"signal {signum}")

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_hup = signal.signal(signal.SIGHUP, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (background job)
    all_modes: list[dict] = []
    try:
        tag = ensure_model(home)
        bodies = demo_bodies()
        bodies_path = tmp / "bodies.json"
        bodies_path.write_text(json.dumps(bodies))
        wrk_script = tmp / "predict.lua"
        write_wrk_script(wrk_script, bodies)
        log(f"model {tag} (BENTOML_HOME={home}); {len(bodies)} validation rows; load generator {args.loadgen}; "
            f"{os.cpu_count()} CPUs; logs in {log_dir}")
        env0 = base_env(home, data_dir, tag)
        if "on" in args.modes:
            sink = OtlpSink()
            log(f"OTLP/HTTP sink on 127.0.0.1:{sink.port}")
        for mode in args.modes:
            record = {"mode": mode, "results": {k: [] for k in KINDS}, "sent": {k: 0 for k in KINDS}}
            all_modes.append(record)
            run_mode(mode, args, env0, servers, sink, log_dir, bodies, wrk_script, bodies_path, record)
        report(all_modes, sink, args)
    except KeyboardInterrupt as exc:
        log(f"\ninterrupted ({exc}); stopping servers")
        servers.stop_all()
        all_modes = [m for m in all_modes if all(m["results"][k] for k in KINDS)]
        if all_modes:
            log("partial results:")
            report(all_modes, sink, args)
    except Exception as exc:  # noqa: BLE001 - report any setup failure in one line, then clean up
        log(f"\nbenchmark failed: {type(exc).__name__}: {exc}")
        servers.stop_all()
        return 1
    finally:
        servers.stop_all()
        if sink is not None:
            sink.close()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
        signal.signal(signal.SIGINT, old_int)
        if args.keep_logs:
            log(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
