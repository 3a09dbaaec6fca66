"""Soak: a steady rate of predictions and feedback for --minutes, drift windows closing.

Serves the demo classifier (one worker, SQLite, window_rows=500), drives --rate requests
per second of 5-row batches from a thread pool, posts the true labels for every batch
a moment later, and samples the worker's RSS every 10 s. Reports RSS growth after a
warm-up (the first 2 minutes), error responses, monitor and telemetry drops, windows
closed and performance windows scored.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 50]

Target: RSS growth under 50 MB after warm-up, no error responses, drops reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=50, help="prediction requests per second (5 rows each)")
    ap.add_argument("--warmup", type=float, default=2, help="minutes before the RSS baseline is taken")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    os.environ.update(BENTOML_HOME=str(tmp / "home"), BENTOML_DO_NOT_TRACK="True")
    for k in [k for k in os.environ if k.startswith(("OTEL_", "VIGIL_")) and not k.startswith("VIGIL_TEST_")]:
        del os.environ[k]
    import httpx
    import numpy as np
    import psutil

    from models.demo import demo_frames, register_demo
    from tests.support.server import descendants, serve

    tag = register_demo("classifier").tag
    _, v = demo_frames("classifier")
    X = v.drop(columns=["target"]).to_dict("records")
    y = v["target"].to_numpy()
    env = {"VIGIL_MODEL": tag, "VIGIL_WINDOW_ROWS": "500", "VIGIL_PERFORMANCE_INTERVAL": "5"}
    errors = {"predict": 0, "feedback": 0, "transport": 0}
    sent = {"predict": 0, "feedback": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.minutes * 60
    with serve(tmp, env) as server:
        worker = [p for p in descendants(server.proc.pid) if "worker" in " ".join(p.cmdline())][0]

        def client(seed: int, rate: float):
            rng = np.random.default_rng(seed)
            with httpx.Client(base_url=server.url, timeout=30) as c:
                nxt = time.monotonic()
                while time.monotonic() < stop_at:
                    nxt += 1 / rate
                    idx = rng.integers(0, len(X), size=5)
                    try:
                        r = c.post("/predict", json={"instances": [X[i] for i in idx]})
                        ok = r.status_code == 200
                        f = None
                        if ok:
                            body = {"outcomes": [{"request_id": r.json()["request_id"], "index": j,
                                                  "outcome": int(y[i])} for j, i in enumerate(idx)]}
                            f = c.post("/feedback", json=body)
                        with lock:
                            sent["predict"] += 1
                            errors["predict"] += not ok
                            if f is not None:
                                sent["feedback"] += 1
                                errors["feedback"] += f.status_code != 200
                    except httpx.HTTPError:
                        with lock:
                            errors["transport"] += 1
                    time.sleep(max(0.0, nxt - time.monotonic()))

        threads = [threading.Thread(target=client, args=(k, args.rate / 4)) for k in range(4)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        samples = []
        baseline = None
        while any(t.is_alive() for t in threads):
            time.sleep(10)
            rss = worker.memory_info().rss / 2**20
            minute = (time.monotonic() - t0) / 60
            samples.append((minute, rss))
            if baseline is None and minute >= args.warmup:
                baseline = rss
            print(f"{minute:5.1f} min  RSS {rss:7.1f} MiB  predictions {sent['predict']:7d}  errors {sum(errors.values())}",
                  flush=True)
        for t in threads:
            t.join()
        status = httpx.get(server.url + "/monitoring/status", timeout=10).json()
        perf = httpx.get(server.url + "/monitoring/performance?limit=1000", timeout=30).json()
        drift = httpx.get(server.url + "/monitoring/drift?limit=1000", timeout=30).json()
    final = samples[-1][1]
    base = baseline if baseline is not None else samples[0][1]
    print(f"\nrequests: {sent['predict']} predict, {sent['feedback']} feedback over {args.minutes} min "
          f"({sent['predict'] / (args.minutes * 60):.1f}/s)")
    print(f"errors: {errors}")
    print(f"RSS: {samples[0][1]:.1f} MiB at first sample, {base:.1f} MiB after warm-up, {final:.1f} MiB at the end: "
          f"growth after warm-up {final - base:+.1f} MiB (target < 50); peak {max(r for _, r in samples):.1f} MiB")
    q = status["monitor_queue"]
    print(f"monitor: enqueued {q['enqueued_rows']}, dropped {q['dropped_rows']}, buffer dropped "
          f"{status['windows']['buffer_dropped_rows']}, consumer errors {q['consumer_errors']}; "
          f"telemetry dropped {status['telemetry']['dropped']}")
    print(f"windows closed: {len(drift['windows'])}; performance windows scored: {len(perf['windows'])}; "
          f"outcomes {perf['outcomes']}")


if __name__ == "__main__":
    main()
