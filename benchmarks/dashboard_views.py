"""How fast the dashboard's views answer, and the page renders, at 500 windows x 50 features.

A synthetic 50-feature classifier is registered in a temporary BentoML home; 500 windows
of 200 rows (the last 150 with 5 features shifted) are evaluated with the model's real
profile and stored directly (reports, kept sketches, serving figures, performance
results), as a served model would have stored them. Then:

1. in process: each view the page reads, called on a ``ModelMonitor`` over that store
   (first call, then the median of ``--repeat``);
2. over HTTP: the same views from ``bentoml serve`` of the model on that store (median),
   with their sizes;
3. in headless Chromium (Debian's ``/usr/bin/chromium``): ``/dashboard/?windows=500``,
   from navigation to the first screen drawn and to every panel drawn, three visits in one
   profile (the first with nothing cached), then a refresh cycle. Each visit's time is
   attributed with Chromium's own counters (CDP ``Performance.getMetrics``: script, layout
   and style time on the page's main thread) and the page's timeline (the views fetched,
   the first screen drawn, the scripts' sizes).

Targets: each view under 100 ms, the page under 1 s. Figures are printed, not asserted.
The machine's load moves them: compare changes back to back, several runs each.

    .venv/bin/python benchmarks/dashboard_views.py [--windows 500] [--features 50] [--repeat 10]

``VIGIL_BENCH_DIR=DIR`` keeps the registered model and the filled store in ``DIR`` and
reuses them on the next run (the 500 windows take a quarter of a minute to fill).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = Path(os.environ.get("VIGIL_BENCH_DIR") or tempfile.mkdtemp(prefix="vigil-bench-dashboard-"))
TMP.mkdir(parents=True, exist_ok=True)
os.environ["BENTOML_HOME"] = str(TMP / "bentoml")  # before anything imports bentoml
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TAG_NAME = "bench-dashboard"
ROWS = 200


def register(features: int, seed: int = 0):
    """A logistic regression over ``features`` numeric features; 1,000 reference rows (so
    drift uses binned KS, as for the demo models), 500 validation rows."""
    from sklearn.linear_model import LogisticRegression

    from models.registry import load, register as do_register

    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(features)]

    def frame(n):
        X = rng.normal(size=(n, features))
        y = (X[:, :5].sum(axis=1) + rng.normal(size=n) > 0).astype(int)
        df = pd.DataFrame(X, columns=names)
        df["y"] = y
        return df

    ref, val = frame(1000), frame(500)
    ref.to_parquet(TMP / "ref.parquet")
    val.to_parquet(TMP / "val.parquet")
    model = LogisticRegression(max_iter=500).fit(ref[names].to_numpy(), ref["y"].to_numpy())
    r = do_register(None, TMP / "ref.parquet", "y", validation=TMP / "val.parquet", name=TAG_NAME, model=model)
    return load(r.tag), names


def fill_store(loaded, names, windows: int, data_dir: Path) -> None:
    from models.frames import predict_frame
    from monitoring.store import Store
    from tests.support.filled_store import evaluator_for, fill

    prof, det = loaded.profile, loaded.profile.detector
    shifted = names[5:10]

    def window(wid, rng):
        df = pd.DataFrame(rng.normal(size=(ROWS, len(names))), columns=names)
        if wid >= windows - 150:
            df[shifted] += 1.0
        batch, pred = predict_frame(loaded.adapter, df)
        w = prof.empty_like()
        w.update(batch.numeric, batch.codes, class_codes=pred.class_codes, proba=pred.proba,
                 mv_errors=None if det is None else det.log_errors(batch.numeric))
        return w

    store = Store(f"sqlite:///{data_dir / 'vigil.db'}")
    fill(store, loaded.tag, evaluator_for(loaded.schema, prof), window, windows)
    store.dispose()


def timed(fn, repeat: int) -> tuple[float, float]:
    """(first call, median of ``repeat`` more) in milliseconds."""
    t = time.perf_counter()
    fn()
    first = (time.perf_counter() - t) * 1000
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return first, statistics.median(runs)


def in_process(loaded, data_dir: Path, windows: int, feature: str, repeat: int) -> list[tuple]:
    from models.registry import load_validation
    from monitoring.config import load_settings
    from monitoring.runtime.monitor import ModelInfo, ModelMonitor

    settings = load_settings({}, data_dir=data_dir, window_rows=ROWS)
    y_true, y_pred, proba = load_validation(loaded)
    m = ModelMonitor(settings, ModelInfo(tag=loaded.tag, name=loaded.name, version=loaded.version,
                                         schema=loaded.schema, profile=loaded.profile, validation=(y_true, y_pred, proba),
                                         baseline=loaded.meta.get("baseline", {})), worker="bench")
    views = [("status", lambda: m.status()), (f"windows (limit {windows})", lambda: m.timeline(windows)),
             (f"performance (limit {windows})", lambda: m.performance(windows)), ("alerts (limit 50)", lambda: m.alerts(50)),
             (f"feature {feature} (limit {windows}, 20 histograms)", lambda: m.feature(feature, windows, 20))]
    out = [(name, *timed(fn, repeat)) for name, fn in views]
    m.store.dispose()
    return out


def cold_history(loaded, data_dir: Path, windows: int, rounds: int = 5) -> tuple[list[float], list[float]]:
    """A cold read of the window history (what the windows view's first call waits for),
    ms: from the stored digests, and from the reports as before schema v4 (condensed one
    by one), alternated ``rounds`` times in this process."""
    from monitoring.runtime.history import WindowHistory, condense
    from monitoring.store import Store

    store = Store(f"sqlite:///{data_dir / 'vigil.db'}")
    names = loaded.schema.names
    store.windows.digests(loaded.tag, 1)  # the connection is open for both
    digests, reports = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        WindowHistory(store, loaded.tag, names).recent(windows)
        digests.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        [condense(r, names) for r in store.windows.recent(loaded.tag, windows)]
        reports.append((time.perf_counter() - t) * 1000)
    store.dispose()
    return digests, reports


def over_http(url: str, windows: int, feature: str, repeat: int) -> list[tuple]:
    paths = ["/monitoring/status", f"/monitoring/windows?limit={windows}", f"/monitoring/performance?limit={windows}",
             "/monitoring/alerts?limit=50", f"/monitoring/features/{feature}?limit={windows}&histograms=20"]
    out = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for p in paths:  # the first call finds the server's window history cold
            t = time.perf_counter()
            size = len(c.get(p).raise_for_status().content)
            first = (time.perf_counter() - t) * 1000
            _, median = timed(lambda: c.get(p).raise_for_status(), repeat)
            out.append((p, first, median, size))
    return out


#: Where a visit's time went, from the page's own timeline (ms after navigation, or bytes).
TIMELINE = """() => {
    const at = (name) => { const m = performance.getEntriesByName(name)[0]; return m ? m.startTime : null; };
    const nav = performance.getEntriesByType('navigation')[0];
    const scripts = performance.getEntriesByType('resource').filter((r) => r.initiatorType === 'script');
    return {dcl: nav.domContentLoadedEventEnd, views: at('vigil:views'),
            script_bytes: scripts.reduce((a, r) => a + (r.decodedBodySize || 0), 0),
            script_fetch: Math.max(0, ...scripts.map((r) => r.responseEnd))};
}"""


def in_browser(url: str, windows: int, visits: int = 3) -> tuple[list[dict], float, list[str]]:
    """Per visit in one browser profile (the first finds nothing cached; later ones reuse
    the HTTP cache and V8's code cache): the first screen and every panel drawn (ms after
    navigation), the page's timeline (:data:`TIMELINE`) and Chromium's main-thread
    counters (ms); then the time of a refresh with nothing new."""
    from tests.support.browser import PageWatch, chromium

    times, errors = [], []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        for _ in range(visits):
            page = context.new_page()
            watch = PageWatch(page)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(f"{url}/dashboard/?windows={windows}&refresh=3600")
            page.wait_for_selector("body[data-renders]", state="attached", timeout=60_000)
            screen, every = page.evaluate("() => [window.vigil.firstScreenAt, window.vigil.renderedAt]")
            counters = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            times.append({"screen": screen, "every": every, **page.evaluate(TIMELINE),
                          **{k: 1000 * counters.get(k, 0.0) for k in ("ScriptDuration", "LayoutDuration",
                                                                       "RecalcStyleDuration", "TaskDuration")}})
            errors += watch.errors
            if len(times) < visits:
                page.close()
        page.evaluate("() => window.vigil.refresh()")
        refresh = page.evaluate("() => window.vigil.lastRenderMs")
        if not page.evaluate("() => document.getElementById('chart-heatmap').data[0].z.flat().length"):
            errors.append("empty heatmap")
        page.screenshot(path=str(TMP / "dashboard-500x50.png"), full_page=True)
    return times, refresh, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=500)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--skip-browser", action="store_true")
    a = ap.parse_args()
    from tests.support.server import serve

    t = time.perf_counter()
    data_dir = TMP / "data"
    if (data_dir / "vigil.db").is_file():  # VIGIL_BENCH_DIR, filled by an earlier run
        from models.registry import load

        loaded = load(f"{TAG_NAME}:latest")
        names = list(loaded.schema.names)
    else:
        loaded, names = register(a.features)
        fill_store(loaded, names, a.windows, data_dir)
    print(f"setup: {a.windows} windows x {a.features} features stored in {time.perf_counter() - t:.1f} s "
          f"({(data_dir / 'vigil.db').stat().st_size / 1e6:.1f} MB SQLite) under {TMP}")
    feature = names[5]
    print("\nin process (ModelMonitor views)            first ms   median ms   target < 100 ms")
    for name, first, med in in_process(loaded, data_dir, a.windows, feature, a.repeat):
        print(f"  {name:<44} {first:8.1f}   {med:9.1f}   {'met' if med < 100 else 'MISSED'}")
    digests, reports = cold_history(loaded, data_dir, a.windows)
    ratios = sorted(r / d for d, r in zip(digests, reports))
    print(f"  cold history read, {a.windows} windows: from digests {statistics.median(digests):.1f} ms "
          f"(range {min(digests):.1f}-{max(digests):.1f}), from reports {statistics.median(reports):.1f} ms "
          f"(range {min(reports):.1f}-{max(reports):.1f}); reports / digests {statistics.median(ratios):.1f}x "
          f"(range {ratios[0]:.1f}-{ratios[-1]:.1f}x, paired rounds)")
    env = {"VIGIL_MODEL": loaded.tag, "VIGIL_WINDOW_ROWS": str(ROWS), "VIGIL_DATA_DIR": str(data_dir)}
    with serve(TMP / "server", env) as server:
        print("\nover HTTP (bentoml serve)                               first ms   median ms        bytes")
        for p, first, med, size in over_http(server.url, a.windows, feature, a.repeat):
            print(f"  {p:<54} {first:8.1f}   {med:9.1f}   {size:10,}  {'met' if med < 100 else 'MISSED'}")
        if not a.skip_browser:
            visits, refresh, errors = in_browser(server.url, a.windows)
            print(f"\nheadless Chromium, /dashboard/?windows={a.windows}, ms after navigation (target: every panel "
                  "< 1000 ms)")
            for i, v in enumerate(visits):
                views = "–" if v["views"] is None else f"{v['views']:.0f}"
                print(f"  visit {i + 1} ({'nothing cached' if i == 0 else 'cached'}): first screen "
                      f"{v['screen']:6.0f}, every panel {v['every']:6.0f}  {'met' if v['every'] < 1000 else 'MISSED'}\n"
                      f"    timeline: scripts ({v['script_bytes'] / 1e3:,.0f} KB) fetched by {v['script_fetch']:.0f}, "
                      f"DOMContentLoaded {v['dcl']:.0f}, views fetched {views}\n"
                      f"    main thread: script {v['ScriptDuration']:.0f}, layout {v['LayoutDuration']:.0f}, "
                      f"style {v['RecalcStyleDuration']:.0f}, all tasks {v['TaskDuration']:.0f}")
            print(f"  a refresh with nothing new: {refresh:.0f} ms; console errors: {len(errors)}"
                  f"{' ' + '; '.join(errors[:3]) if errors else ''}")
            print(f"screenshot: {TMP / 'dashboard-500x50.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
