"""Serving while the telemetry backend is healthy, refusing, blackholed or stalling.

Four Vigil servers (demo classifier, one worker each, every request traced over
OTLP/HTTP) point at four backends run by this script: a healthy sink (200 at once),
a refused port, a blackhole (accepts, never answers) and a stalling sink (answers after
10 s). wrk drives each in turn for --duration seconds, --runs interleaved rounds; the
script prints medians of req/s and p99 per backend, the ratio to the healthy run, the
spans dropped (from /metrics), and how long each server takes to shut down (SIGTERM).

    .venv/bin/python benchmarks/telemetry_faults.py [--runs 5] [--duration 8] [--rate 100]

With ``--rate R`` a second phase follows: ``hey`` (``apt-get install hey``) offers a fixed
R requests/s (4 connections, R/4 each), below saturation, and the p50/p99 of each backend
are compared with the healthy one's. A closed loop keeps the worker saturated, so its p99 is
mostly queueing (and, with a healthy backend, the exporter's own CPU); a fixed rate below
capacity shows what a dead or stalling backend adds to a request's latency.

Targets: req/s and p99 within 10 % of the healthy run; drops counted (> 0) in the fault
runs; shutdown within 5 s. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sink(stall: float) -> int:
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if stall:
                time.sleep(stall)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def blackhole() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    held = []

    def run():
        while True:
            c, _ = s.accept()
            held.append(c)

    threading.Thread(target=run, daemon=True).start()
    return s.getsockname()[1]


def refused() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wrk(url: str, seconds: float, body: Path) -> tuple[float, float]:
    lua = body.with_suffix(".lua")
    lua.write_text('wrk.method="POST"\nwrk.headers["Content-Type"]="application/json"\n'
                   f'local f=io.open("{body}","r"); wrk.body=f:read("*a"); f:close()\n')
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{int(seconds)}s", "--latency", "-s", str(lua), url + "/predict"],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return rps, p99


def hey(url: str, seconds: float, body: Path, rate: float) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) at a fixed offered rate."""
    out = subprocess.run(["hey", "-z", f"{int(seconds)}s", "-c", "4", "-q", f"{rate / 4:g}", "-m", "POST",
                          "-T", "application/json", "-D", str(body), url + "/predict"],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1e3
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1e3
    return rps, p50, p99


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--rate", type=float, default=None, help="also measure latency at this fixed rate (hey)")
    ap.add_argument("--skip-closed", action="store_true", help="only the fixed-rate phase")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-telfaults-"))
    os.environ.update(BENTOML_HOME=str(tmp / "home"), BENTOML_DO_NOT_TRACK="True")
    for k in [k for k in os.environ if k.startswith(("OTEL_", "VIGIL_")) and not k.startswith("VIGIL_TEST_")]:
        del os.environ[k]
    from models.demo import demo_frames, register_demo
    from tests.support.server import serve, stop

    tag = register_demo("classifier").tag
    _, v = demo_frames("classifier")
    body = tmp / "body.json"
    body.write_text(json.dumps({"instances": v.drop(columns=["target"]).head(1).to_dict("records")}))
    backends = {"healthy": sink(0), "refused": refused(), "blackhole": blackhole(), "stalled 10s": sink(10)}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in backends}
    servers = {}
    import contextlib

    with contextlib.ExitStack() as stack:
        for name, port in backends.items():
            env = {"VIGIL_MODEL": tag, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                   "OTEL_METRIC_EXPORT_INTERVAL": "5000"}
            servers[name] = stack.enter_context(serve(tmp / name.replace(" ", "_"), env))
        for name, srv in servers.items():
            wrk(srv.url, 3, body)  # warm-up
        for r in range(0 if args.skip_closed else args.runs):
            for name, srv in servers.items():
                results[name].append(wrk(srv.url, args.duration, body))
                print(f"run {r + 1}/{args.runs} {name:12} {results[name][-1][0]:8.1f} req/s  p99 {results[name][-1][1]:7.1f} ms",
                      flush=True)
        fixed: dict[str, list[tuple[float, float, float]]] = {k: [] for k in backends}
        for r in range(args.runs if args.rate else 0):
            for name, srv in servers.items():
                fixed[name].append(hey(srv.url, args.duration, body, args.rate))
                rps, p50, p99 = fixed[name][-1]
                print(f"fixed {args.rate:g}/s run {r + 1}/{args.runs} {name:12} {rps:7.1f} req/s  p50 {p50:6.1f} ms  "
                      f"p99 {p99:6.1f} ms", flush=True)
        import httpx

        dropped, shutdown = {}, {}
        for name, srv in servers.items():
            # from the worker itself: the four servers share one BENTOML_HOME, hence one Prometheus
            # multiprocess directory, so each one's /metrics sums all four
            st = httpx.get(srv.url + "/monitoring/status", timeout=10).json()
            dropped[name] = st["telemetry"]["dropped"]["spans"]
            shutdown[name] = stop(srv.proc, timeout=60)
    if results["healthy"]:
        base_rps = statistics.median(r for r, _ in results["healthy"])
        base_p99 = statistics.median(p for _, p in results["healthy"])
        print(f"\nclosed loop (wrk, 8 connections, saturating)\n{'backend':12} {'req/s':>8} {'p99 ms':>8} "
              f"{'req/s vs healthy':>17} {'p99 vs healthy':>15} {'spans dropped':>14} {'shutdown s':>11}")
        for name in backends:
            rps = statistics.median(r for r, _ in results[name])
            p99 = statistics.median(p for _, p in results[name])
            print(f"{name:12} {rps:8.1f} {p99:8.1f} {rps / base_rps:17.3f} {p99 / base_p99:15.3f} "
                  f"{dropped[name]:14.0f} {shutdown[name]:11.1f}")
    if args.rate:
        b50 = statistics.median(x[1] for x in fixed["healthy"])
        b99 = statistics.median(x[2] for x in fixed["healthy"])
        print(f"\nfixed rate {args.rate:g} req/s offered (hey, 4 connections)\n{'backend':12} {'req/s':>8} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'p50 vs healthy':>15} {'p99 vs healthy':>15} {'spans dropped':>14} "
              f"{'shutdown s':>11}")
        for name in backends:
            rps = statistics.median(x[0] for x in fixed[name])
            p50 = statistics.median(x[1] for x in fixed[name])
            p99 = statistics.median(x[2] for x in fixed[name])
            print(f"{name:12} {rps:8.1f} {p50:8.1f} {p99:8.1f} {p50 / b50:15.3f} {p99 / b99:15.3f} "
                  f"{dropped[name]:14.0f} {shutdown[name]:11.1f}")
    print("\ntargets: req/s and p99 within 10 % of healthy; spans dropped > 0 and counted in the fault runs; "
          "shutdown <= 5 s")


if __name__ == "__main__":
    main()
