"""The Grafana dashboard (``deploy/grafana/vigil.json``): its structure, and every panel's
PromQL run against Debian's Prometheus scraping two served models (the demo classifier
and regressor, told apart by a ``model`` target label) under simulated traffic."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.scenarios import Knobs
from service.simulate import Plan, Simulator, fetch_sample
from tests.support.prometheus import run_prometheus
from tests.support.server import ROOT, serve

DASHBOARD = ROOT / "deploy" / "grafana" / "vigil.json"
#: What Grafana puts in place of its variables when a test runs the queries.
SUBSTITUTE = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m",
              "$model": ".*", "$instance": ".*", "$metric": ".*"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(d: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in d["panels"] if p["type"] != "row" for t in p["targets"]]


def expand(expr: str, **over: str) -> str:
    for k, v in {**SUBSTITUTE, **{f"${k}": v for k, v in over.items()}}.items():
        expr = expr.replace(k, v)
    return expr


def test_the_dashboard_is_well_formed():
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))                                             # unique panel ids
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("model", "instance"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        here = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not here & cells, f"panel {p['title']!r} overlaps another"
        cells |= here
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
    for p, t in queries(d):
        assert t["datasource"]["uid"] == "${datasource}", p["title"]
        assert 'model=~"$model"' in t["expr"] and 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])
    metrics = {m for _, t in queries(d) for m in re.findall(r"\b((?:vigil|bentoml)_[a-z_]+)", t["expr"])}
    for needed in ("vigil_requests_total", "vigil_request_duration_bucket", "bentoml_service_request_total",
                   "vigil_drift_score", "vigil_quality_missing_rate", "vigil_prediction_class_share",
                   "vigil_performance_realized", "vigil_performance_estimated", "vigil_performance_band_lower",
                   "vigil_alerts_firing", "vigil_process_cpu_utilization"):
        assert needed in metrics, needed


def traffic(url: str, scenario: str, seconds: float, seed: int, **kw) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        plan = Plan(url=url, scenario=scenario, duration=seconds, max_requests=10_000, feedback_delay=0.5,
                    seed=seed, **kw)
        Simulator(plan, client, fetch_sample(client, seed)).run()


def drained(urls: list[str], timeout: float = 30.0) -> float:
    """The time once every server's monitor queue has processed every row it was given (so
    the windows those rows close are evaluated and published to ``/metrics``)."""
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            q = httpx.get(f"{url}/monitoring/status", timeout=10).json()["monitor_queue"]
            if q["depth"] == 0 and q["processed_rows"] + q["dropped_rows"] >= q["enqueued_rows"]:
                break
            assert time.monotonic() < deadline, (url, q)
            time.sleep(0.1)
    return time.time()


def scraped_after(prom: str, t: float, n_targets: int, timeout: float = 30.0) -> None:
    """Wait until Prometheus holds a successful scrape of every target taken after ``t``."""
    deadline = time.monotonic() + timeout

    def query(expr: str) -> list:
        return httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"]

    while True:  # timestamp() of a plain selector is the scrape's own time, not the query's
        when, up = query('timestamp(up{job="vigil"})'), query('up{job="vigil"}')
        if len(when) == n_targets and all(float(r["value"][1]) > t for r in when) \
                and all(r["value"][1] == "1" for r in up):
            return
        assert time.monotonic() < deadline, (t, when, up)
        time.sleep(0.2)


@pytest.mark.e2e
def test_every_panel_query_returns_data_from_prometheus_scraping_vigil(tmp_path, demo_tags, bentoml_home):
    d = dashboard()
    env = {"VIGIL_WINDOW_ROWS": "100", "VIGIL_PERFORMANCE_INTERVAL": "0.5", "VIGIL_SYSTEM_METRICS_INTERVAL": "1"}
    with contextlib.ExitStack() as stack:
        def start(kind: str):
            # a BentoML home each (the models shared): one home means one Prometheus multiprocess
            # directory, and each server's /metrics would sum both (see the README)
            home = tmp_path / kind / "bentoml"
            home.mkdir(parents=True)
            (home / "models").symlink_to(bentoml_home / "models")
            return stack.enter_context(serve(tmp_path / kind, {**env, "VIGIL_MODEL": demo_tags[kind],
                                                               "BENTOML_HOME": str(home)}))

        with ThreadPoolExecutor(2) as ex:  # both servers start at once
            classifier, regressor = ex.map(start, ["classifier", "regressor"])
        targets = {"classifier": classifier.url.split("//")[1], "regressor": regressor.url.split("//")[1]}
        prom = stack.enter_context(run_prometheus(tmp_path, targets))
        runs = [threading.Thread(target=traffic, args=(regressor.url, "steady", 12, 1), kwargs={"rate": 15}),
                threading.Thread(target=traffic, args=(classifier.url, "sudden-drift", 12, 2),
                                 kwargs={"rate": 15, "batch": 20, "knobs": Knobs(change_at=0.3)})]
        for t in runs:
            t.start()
        for t in runs:
            t.join()
        traffic(classifier.url, "outage", 3, 3, rate=10)                       # rejections and a burst
        done = drained([classifier.url, regressor.url])                         # every window's figures published
        scraped_after(prom, done, len(targets))

        def run(expr: str) -> list:
            r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert r["status"] == "success", (expr, r)
            return r["data"]["result"]

        empty = [(p["title"], t["refId"], expand(t["expr"])) for p, t in queries(d) if not run(expand(t["expr"]))]
        assert empty == [], json.dumps(empty, indent=1)

        # the template variables list both models, and a model's panels show only that model
        for name in ("model", "instance"):
            v = next(v for v in d["templating"]["list"] if v["name"] == name)
            m = re.fullmatch(r"label_values\((.*), (\w+)\)", v["query"]["query"])
            got = httpx.get(f"{prom}/api/v1/label/{m.group(2)}/values",
                            params={"match[]": expand(m.group(1))}, timeout=10).json()["data"]
            assert len(got) == 2, (name, got)
        share = next(t for p, t in queries(d) if "vigil_prediction_class_share" in t["expr"])
        assert run(expand(share["expr"], model="classifier")) and not run(expand(share["expr"], model="regressor"))
        mean = next(t for p, t in queries(d) if "vigil_prediction_mean" in t["expr"])
        assert run(expand(mean["expr"], model="regressor")) and not run(expand(mean["expr"], model="classifier"))

