"""Unbounded series: can requests grow /metrics or the worker's memory without bound?

Serves the demo classifier (one worker, its own BENTOML_HOME so that /metrics is this
server's alone, caller instance ids on), then measures the size and scrape time of
``/metrics`` and the worker's RSS:

1. after a warm-up (every route once, 200 predictions): the baseline;
2. after ``--requests`` predictions (40,000), each with its own ``X-Request-ID`` and
   instance id, from 4 client threads;
3. after ``--paths`` (4,000) ``GET /nope/<uuid>`` and a few unknown method tokens.

Before the fix (issue 12 item 4), 4,000 unknown paths took /metrics from 29 KB to 16.6 MB
(a 5 s scrape, +80 MiB RSS): BentoML labelled its HTTP series by raw path. Caller ids
never reached a label. Bounded means: step 3 adds nothing to /metrics, step 2 adds only
counts (no series).

    .venv/bin/python benchmarks/unbounded_series.py [--requests 40000] [--paths 4000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def series(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40_000, help="predictions with unique caller ids")
    ap.add_argument("--paths", type=int, default=4_000, help="requests to unknown paths")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-series-"))
    os.environ.update(BENTOML_HOME=str(tmp / "home"), BENTOML_DO_NOT_TRACK="True")
    for k in [k for k in os.environ if k.startswith(("OTEL_", "VIGIL_")) and not k.startswith("VIGIL_TEST_")]:
        del os.environ[k]
    import httpx

    from models.demo import demo_frames, register_demo
    from tests.support.server import descendants, serve

    tag = register_demo("classifier").tag
    _, v = demo_frames("classifier")
    X = v.drop(columns=["target"]).to_dict("records")
    env = {"VIGIL_MODEL": tag, "VIGIL_INSTANCE_ID_FIELD": "transaction_id"}
    with serve(tmp, env) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        worker = [p for p in descendants(server.proc.pid) if "worker" in " ".join(p.cmdline())][0]

        def measure(step: str) -> dict:
            t = time.perf_counter()
            text = c.get("/metrics").text
            scrape = time.perf_counter() - t
            out = {"step": step, "bytes": len(text), "series": series(text), "scrape_ms": scrape * 1000,
                   "rss": worker.memory_info().rss / 2**20}
            print(f"{step:<28} /metrics {out['bytes'] / 1024:9.1f} KiB  {len(out['series']):6d} series  "
                  f"scrape {out['scrape_ms']:7.1f} ms  worker RSS {out['rss']:7.1f} MiB", flush=True)
            return out

        for path in ("/readyz", "/livez", "/docs.json", "/monitoring/status", "/monitoring/drift", "/nope/warm-up"):
            c.get(path)
        c.request("BREW", "/predict")
        for i in range(200):
            c.post("/predict", json={"instances": [X[i % len(X)]]})
        base = measure("baseline (after warm-up)")

        failures = [0]
        lock = threading.Lock()

        def predictor(k: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as cc:
                for i in range(k, args.requests, args.threads):
                    row = {**X[i % len(X)], "transaction_id": f"txn-{uuid.uuid4().hex}"}
                    r = cc.post("/predict", json={"instances": [row]}, headers={"X-Request-ID": f"order-{uuid.uuid4()}"})
                    if r.status_code != 200:
                        with lock:
                            failures[0] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=predictor, args=(k,)) for k in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = args.requests / (time.perf_counter() - t0)
        ids = measure(f"{args.requests} unique caller ids")

        for i in range(args.paths):
            c.get(f"/nope/{uuid.uuid4()}")
        for method in ("BREW", "PROPFIND", "X-ATTACK"):
            c.request(method, f"/nope/{uuid.uuid4()}")
        paths = measure(f"{args.paths} unknown paths")
        leaked = [s for s in paths["series"] if "/nope/" in s or "order-" in s or "txn-" in s]

    print(f"\n{args.requests} predictions at {rate:.0f}/s ({failures[0]} not 200); {args.paths} unknown paths")
    print(f"/metrics: {base['bytes'] / 1024:.1f} KiB -> {ids['bytes'] / 1024:.1f} KiB (caller ids) -> "
          f"{paths['bytes'] / 1024:.1f} KiB (unknown paths); ratio after/baseline {paths['bytes'] / base['bytes']:.3f}")
    grown = sorted({s.split("{")[0] for s in ids["series"] - base["series"]})
    print(f"series: {len(base['series'])} -> {len(ids['series'])} -> {len(paths['series'])}; "
          f"new during the predictions: {len(ids['series'] - base['series'])} (of {', '.join(grown) or 'none'}: "
          f"gauges of the windows that closed, per feature/class), new from unknown paths: "
          f"{len(paths['series'] - ids['series'])}; labels holding a raw path or caller id: {len(leaked)}")
    print(f"worker RSS: {base['rss']:.1f} -> {ids['rss']:.1f} -> {paths['rss']:.1f} MiB; scrape "
          f"{base['scrape_ms']:.1f} -> {paths['scrape_ms']:.1f} ms")
    bounded = not leaked and paths["series"] == ids["series"] and paths["bytes"] - ids["bytes"] < 1024
    print("bounded: " + ("yes (unknown paths add no series; caller ids reach no label)" if bounded else "NO"))
    sys.exit(0 if bounded else 1)


if __name__ == "__main__":
    main()
