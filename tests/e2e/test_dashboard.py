"""The dashboard in headless Chromium, against a served model after ``vigil simulate
sudden-drift``: the heatmap marks exactly the drifted features, the performance chart
shows the drop below the band, the firing alert links to its traces; without the token
every action is refused and nothing changes; with it, acknowledge, silence and re-baseline
work. One server and one simulated run for the whole module (the tests run in order: the
read-only one first)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from monitoring.store import Store
from tests.support.browser import PageWatch, chromium
from tests.support.server import ROOT, serve

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
TOKEN = "dashboard-test-token"
DRIFTED = ("mean_texture", "worst_concavity")
REQUESTS, BATCH, WINDOW_ROWS = 120, 20, 200  # 12 windows: 5 clean (the 5th mixed), 7 drifted


class TraceBackend:
    """A stand-in trace UI: ``GET /trace/<id>`` answers 200 for the trace ids it was told
    about (those the simulator's requests got back), 404 otherwise."""

    def __init__(self):
        self.known: set[str] = set()
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                m = re.fullmatch(r"/trace/([0-9a-f]{32})", self.path)
                tid = m.group(1) if m else ""
                outer.hits.append(tid)
                ok = tid in outer.known
                body = (f"<html><body><h1>trace {tid}</h1></body></html>" if ok else "unknown trace").encode()
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "text/html" if ok else "text/plain")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traces():
    backend = TraceBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_tags, traces):
    tmp = tmp_path_factory.mktemp("dashboard")
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": str(WINDOW_ROWS), "VIGIL_API_TOKEN": TOKEN,
           "VIGIL_ALERT_TRACE_URL": traces.url + "/trace/{trace_id}", "VIGIL_PERFORMANCE_INTERVAL": "0.3"}
    with serve(tmp, env) as server:
        yield server, tmp


def wait_for(fn, timeout: float = 60.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


@pytest.fixture(scope="module")
def simulated(served, traces):
    """``vigil simulate sudden-drift`` through the CLI; returns its per-request records."""
    server, tmp = served
    record = tmp / "requests.jsonl"
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "simulate", "sudden-drift", "--url", server.url, "--token", TOKEN,
         "--requests", str(REQUESTS), "--batch", str(BATCH), "--rate", "40", "--duration", "60",
         "--feedback-delay", "1", "--seed", "3", "--record", str(record),
         *[a for f in DRIFTED for a in ("--feature", f)]],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{REQUESTS} /predict requests (200: {REQUESTS})" in out.stderr, out.stderr[-2000:]
    records = [json.loads(line) for line in record.read_text().splitlines()]
    traces.known.update(r["trace_id"] for r in records)

    def firing():
        body = httpx.get(server.url + "/monitoring/alerts").json()
        got = {(a["rule"], a["instance"]) for a in body["firing"]}
        return got >= {("feature_drift", f) for f in DRIFTED} | {("performance_drop", "accuracy")}

    assert wait_for(firing), httpx.get(server.url + "/monitoring/alerts").text[:3000]

    def evaluated():   # the alerts can fire before the last windows are evaluated
        return len(httpx.get(server.url + "/monitoring/windows", params={"limit": 50}).json()["windows"]["id"]) == 12

    assert wait_for(evaluated), httpx.get(server.url + "/monitoring/status").text[:3000]
    return records


def reference_version(server_tmp: Path, tag: str) -> int:
    store = Store(f"sqlite:///{server_tmp / 'data' / 'vigil.db'}")
    try:
        return store.references.version(tag)
    finally:
        store.dispose()


def open_dashboard(browser, url: str):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = PageWatch(page)
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/dashboard/?refresh=1")
    page.wait_for_selector("body[data-renders]", state="attached", timeout=30_000)
    page.wait_for_selector("#alerts-table tbody tr[data-state=firing]", timeout=30_000)
    return page, watch


def admin_state(url: str) -> dict:
    body = httpx.get(url + "/monitoring/alerts").json()
    return {"silences": body["silences"], "acked": sorted((a["rule"], a["instance"]) for a in body["alerts"]
                                                          if a.get("acknowledged_at"))}


def test_the_page_its_assets_and_views_come_from_the_service_itself(served, simulated):
    server, _ = served
    with server.client() as c:
        r = c.get("/dashboard", follow_redirects=True)
        assert r.status_code == 200 and str(r.url).endswith("/dashboard/")
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        srcs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert srcs and all(not re.match(r"^[a-z]+://", s) for s in srcs if not s.startswith("data:")), srcs
        assets = [s for s in srcs if not s.startswith("data:")]
        assert sorted(assets) == ["static/charts.js", "static/dashboard.css", "static/dashboard.js", "static/plot.js"]
        sizes = {s: len(c.get(f"/dashboard/{s}").raise_for_status().content) for s in assets}
        assert sum(sizes.values()) < 100_000, sizes             # the page's own small files, no charting bundle
        spec = c.get("/docs.json").json()
        assert "./dashboard/" in spec["info"]["description"]                          # linked from /
        assert {"/monitoring/drift", "/monitoring/windows", "/admin/rebaseline"} <= set(spec["paths"])  # described

        w = c.get("/monitoring/windows", params={"limit": 5}).json()
        assert len(w["windows"]["id"]) == 5 and len(w["drift"]["score"]) == len(w["features"])
        assert all(len(row) == 5 for row in w["drift"]["score"])
        ended = w["windows"]["ended_at"]
        since = c.get("/monitoring/windows", params={"limit": 50, "since": ended[-2]}).json()
        assert since["windows"]["id"] == w["windows"]["id"][-2:]
        for bad in ({"limit": 0}, {"limit": 1001}, {"since": "yesterday"}, {"since": "nan"}):
            assert c.get("/monitoring/windows", params=bad).status_code == 422, bad
        f = c.get(f"/monitoring/features/{DRIFTED[0]}", params={"limit": 12, "histograms": 3}).json()
        assert f["kind"] == "numeric" and len(f["windows"]["id"]) == 12 and len(f["histograms"]) == 3
        assert len(f["histograms"][0]["counts"]) == len(f["reference"]["counts"]) == len(f["reference"]["edges"]) + 1
        assert c.get("/monitoring/features/no_such_feature").status_code == 404
        assert c.get("/monitoring/features/x", params={"histograms": 51}).status_code == 422

        assert c.get("/monitoring/sample").status_code == 401                         # stored rows: the token
        s = c.get("/monitoring/sample", params={"limit": 5}, headers={"authorization": f"Bearer {TOKEN}"}).json()
        assert len(s["rows"]) == len(s["outcomes"]) == 5 and set(s["rows"][0]) == set(w["features"])


def test_without_the_token_every_action_is_refused_and_nothing_changes(served, simulated, demo_tags, tmp_path):
    server, tmp = served
    tag = httpx.get(server.url + "/monitoring/status").json()["model"]
    before, version = admin_state(server.url), reference_version(tmp, tag)
    with chromium() as browser:
        page, watch = open_dashboard(browser, server.url)
        assert page.inner_text("#mode") == "read-only"
        buttons = page.query_selector_all("button.act")
        assert buttons and all(b.is_disabled() for b in buttons)
        page.screenshot(path=str(tmp_path / "read-only.png"), full_page=True)

        page.fill("#token", "not-the-token")  # a wrong token: the server refuses each action
        page.click("#token-use")
        page.click("#alerts-table tbody tr[data-rule=performance_drop] button:has-text('Acknowledge')")
        page.wait_for_selector("#mode:has-text('token refused')")
        page.click("#silence-submit")
        page.click("#rebaseline-submit")
        page.wait_for_timeout(1500)
        status = page.inner_text("#action-status")
        page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    assert "refused (HTTP 401)" in status and "Nothing changed" in status
    assert admin_state(server.url) == before and before["silences"] == [] and before["acked"] == []
    assert reference_version(tmp, tag) == version == 0
    unexpected = [e for e in watch.errors if "401" not in e]  # the browser logs each refused call
    assert unexpected == []


def test_after_sudden_drift_the_page_shows_the_drift_the_drop_and_the_alert(served, simulated, traces, tmp_path):
    server, tmp = served
    drifted_traces = {r["trace_id"] for r in simulated if r["phase"] == "drifted"}
    with chromium() as browser:
        page, watch = open_dashboard(browser, server.url)
        page.wait_for_timeout(500)
        heat = page.evaluate("""() => {
            const d = document.getElementById('chart-heatmap').data;
            return {y: d[0].y, x: d[0].x, flagged: d[1].y, fx: d[1].x};
        }""")
        assert len(heat["x"]) == REQUESTS * BATCH // WINDOW_ROWS
        assert set(heat["flagged"]) - {"(multivariate)"} == set(DRIFTED)   # exactly the drifted features
        first = min(x for x, y in zip(heat["fx"], heat["flagged"]) if y in DRIFTED)
        assert first >= 4                                                    # nothing before the change
        drawn = page.evaluate("""([name, late, early]) => {   // the canvas: the pixel at each cell's centre
            const el = document.getElementById('chart-heatmap'), g = el.vp.geo, c = el.querySelector('canvas');
            const px = (x, y) => Array.from(c.getContext('2d').getImageData(
                Math.round(g.X.f(x) * c.width / c.clientWidth), Math.round(g.Y.f(y) * c.height / c.clientHeight), 1, 1).data);
            return {late: px(late, name), early: px(early, name)};
        }""", [DRIFTED[0], heat["x"][-1], heat["x"][0]])
        assert drawn["late"][3] == drawn["early"][3] == 255, drawn              # both cells drawn, opaque
        assert sum(drawn["late"][:3]) < 400 < sum(drawn["early"][:3]), drawn  # flagged: dark red or its x; clean: pale

        perf = page.evaluate("""() => Object.fromEntries(document.getElementById('chart-performance').data
            .map(t => [t.name, {x: Array.from(t.x || []), y: Array.from(t.y || [])}]))""")
        worse, low = perf["realized, worse than band"], perf["band low"]
        band_low = dict(zip(low["x"], low["y"]))
        assert len(worse["x"]) >= 2 and all(y < band_low[x] for x, y in zip(worse["x"], worse["y"]))
        assert min(worse["x"]) >= 4 and perf["realized (final)"]["x"]         # and clean windows before it

        row = "#alerts-table tbody tr[data-rule=feature_drift]"
        assert page.inner_text(row + " td.state-firing") == "firing"
        link = page.query_selector(row + " td.traces a[data-trace-id]")
        tid = link.get_attribute("data-trace-id")
        assert link.get_attribute("href") == f"{traces.url}/trace/{tid}" and tid in drifted_traces
        with page.expect_popup() as popup:
            link.click()
        trace_page = popup.value
        trace_page.wait_for_load_state()
        assert trace_page.inner_text("h1") == f"trace {tid}" and tid in traces.hits

        page.select_option("#feature", DRIFTED[0])                          # the drill-down
        page.wait_for_selector("#feature-verdict:has-text('flagged in window')")
        hist = page.evaluate("() => document.getElementById('chart-hist').data.map(t => t.name)")
        assert hist[0] == "reference" and hist[1].startswith("window ")
        page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header back on top of the full-page shot
        page.mouse.move(0, 0)                         # and no chart toolbar showing
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "dashboard-top.png"))
        if os.environ.get("VIGIL_TEST_DASHBOARD_SCREENSHOT"):  # how docs/dashboard.png is made
            shutil.copy(tmp_path / "dashboard.png", os.environ["VIGIL_TEST_DASHBOARD_SCREENSHOT"])

        page.fill("#token", TOKEN)                                             # the operator acts
        page.click("#token-use")
        page.click("#alerts-table tbody tr[data-rule=performance_drop] button:has-text('Acknowledge')")
        page.wait_for_selector("#mode:has-text('operator')")
        page.select_option("#silence-rule", "feature_drift")
        page.click("#silence-submit")
        page.click("#rebaseline-submit")
        page.wait_for_selector("#action-status:has-text('re-baseline to window')")
        page.wait_for_selector("#silences-table tbody tr[data-silence]")
    state = admin_state(server.url)
    assert state["acked"] == [("performance_drop", "accuracy")]
    assert [(s["rule"], s["created_by"]) for s in state["silences"]] == [("feature_drift", "dashboard")]
    tag = httpx.get(server.url + "/monitoring/status").json()["model"]
    assert reference_version(tmp, tag) == 1
    assert watch.errors == []
