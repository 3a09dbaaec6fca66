"""End-to-end alerts: the demo model with its default rules, a webhook receiver and a real
trace backend; two workers and a killed sender; the operator endpoints and CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
import pytest

from monitoring.store import Store
from tests.support.server import ROOT, serve
from tests.support.webhook import Receiver

pytestmark = pytest.mark.e2e
SHIFTED = "mean_texture"




def wait_for(fn, timeout: float = 90.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


def traffic(c, rows, rng, n_requests: int, *, shift: float = 0.0, wrong: bool = False, size: int = 20) -> list[str]:
    """Send requests of ``size`` rows (feature SHIFTED moved by ``shift``) and post an
    outcome for every row: the prediction itself, or the other class when ``wrong``."""
    trace_ids = []
    for _ in range(n_requests):
        batch = [dict(rows[i]) for i in rng.integers(0, len(rows), size=size)]
        for r in batch:
            r[SHIFTED] += shift
        res = c.post("/predict", json={"instances": batch})
        assert res.status_code == 200, res.text
        body = res.json()
        trace_ids.append(res.headers["traceparent"].split("-")[1])
        classes = body["classes"]
        outcomes = [{"request_id": body["request_id"], "index": i,
                     "outcome": (classes[1 - classes.index(p)] if wrong else p)}
                    for i, p in enumerate(body["predictions"])]
        fb = c.post("/feedback", json={"outcomes": outcomes})
        assert fb.status_code == 200, fb.text
    return trace_ids


def notices(rx: Receiver) -> list[tuple[str, str | None, str]]:
    return [(b["alert"]["rule"], b["alert"]["instance"], b["status"]) for b in rx.delivered()]


def alert_status(c) -> dict:
    return c.get("/monitoring/status").json()["alerts"]


def queued(alerts: dict) -> int:
    """Notifications ever queued (every one is an outbox row until retention purges it)."""
    return sum(alerts["outbox"].values())


def tick_after(c, t: float, timeout: float = 30.0) -> dict:
    """The status's alerts once the (single) worker's alert engine has completed a tick that
    began after ``t``: the positive signal a "nothing more happened" check rests on, rather
    than a sleep (ticks run every 5 s)."""
    got = wait_for(lambda: (a := alert_status(c))["last_tick_at"] is not None and a["last_tick_at"] > t and a,
                   timeout=timeout, every=0.2)
    assert got, f"no alert tick began after {t} within {timeout} s"
    return got


def settled(c, timeout: float = 30.0) -> dict:
    """The status's alerts once nothing queued is waiting for delivery."""
    got = wait_for(lambda: (a := alert_status(c))["outbox"]["pending"] == 0 and a, timeout=timeout, every=0.2)
    assert got, alert_status(c)
    return got


def test_default_rules_fire_once_with_traces_and_resolve(phoenix, tmp_path, demo_tags, demo_rows,
                                                         demo_tags_reference_sd):
    rng = np.random.default_rng(3)
    with Receiver() as rx:
        env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "100", "VIGIL_PERFORMANCE_INTERVAL": "0.3",
               "VIGIL_ALERT_WEBHOOKS": json.dumps([{"url": rx.url, "name": "ops", "timeout": 5}]),
               "VIGIL_ALERT_TRACE_URL": phoenix.http_endpoint + "/traces/{trace_id}",
               "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.http_endpoint, "OTEL_METRICS_EXPORTER": "none",
               "OTEL_BSP_SCHEDULE_DELAY": "200"}
        with serve(tmp_path, env) as server, server.client(timeout=30) as c:
            view = c.get("/monitoring/alerts").json()
            rules = {r["name"]: r for r in view["rules"]}
            assert {"feature_drift", "performance_drop", "error_rate", "latency_spike"} <= set(rules)
            n_drift = rules["feature_drift"]["for_windows"]
            assert "budget 1 false alert(s)/week" in rules["feature_drift"]["derivation"]

            # clean traffic, right outcomes: windows 0..2, no alert
            traffic(c, demo_rows, rng, 15)
            assert wait_for(lambda: len(c.get("/monitoring/performance").json()["windows"]) >= 3
                            and all(w["final"] for w in c.get("/monitoring/performance").json()["windows"][:3]))
            time.sleep(1.5)
            assert rx.delivered() == [] and c.get("/monitoring/alerts").json()["firing"] == []

            # drifted traffic, wrong outcomes: windows 3..(3 + n_drift), alerts fire
            shift = 3 * demo_tags_reference_sd[SHIFTED]
            drift_traces = traffic(c, demo_rows, rng, 5 * (n_drift + 1), shift=shift, wrong=True)
            assert wait_for(lambda: {("feature_drift", "firing"), ("performance_drop", "firing")}
                            <= {(r, s) for r, _, s in notices(rx)}), notices(rx)

            # clean traffic returns: they resolve
            traffic(c, demo_rows, rng, 5 * 4)
            assert wait_for(lambda: {("feature_drift", "resolved"), ("performance_drop", "resolved")}
                            <= {(r, s) for r, _, s in notices(rx)}), notices(rx)
            settled(c)                                                  # every queued notification delivered
            final = c.get("/monitoring/alerts").json()
            metrics = c.get("/metrics").text

    got = Counter(notices(rx))
    assert got[("feature_drift", SHIFTED, "firing")] == 1 and got[("feature_drift", SHIFTED, "resolved")] == 1
    assert got[("performance_drop", "accuracy", "firing")] == 1
    assert got[("performance_drop", "accuracy", "resolved")] == 1
    assert not [n for n in got if n[0] == "feature_drift" and n[1] != SHIFTED]    # only the moved feature
    assert not [n for n in got if n[0] in ("error_rate", "latency_spike")]
    assert all(v == 1 for v in got.values()), got                                 # nothing announced twice
    keys = [b["idempotency_key"] for b in rx.delivered()]
    assert len(keys) == len(set(keys))

    bodies = {(b["alert"]["rule"], b["status"]): b["alert"] for b in rx.delivered()}
    drift = bodies[("feature_drift", "firing")]
    assert drift["value"] >= 1 and drift["window"]["id"] >= 3 and drift["threshold"]["bound"] == "score >= 1"
    # what the value is, the test's own figures, and the feature's reference vs window statistics
    assert drift["value_is"] == "score" and drift["score"] == drift["value"] and drift["p_holm"] <= 0.01
    stats = drift["statistics"]
    assert stats["window"]["mean"] - stats["reference"]["mean"] > 2 * stats["reference"]["sd"]
    text = next(b["text"] for b in rx.delivered() if b["alert"] is not None and b["alert"]["rule"] == "feature_drift"
                and b["status"] == "firing")
    assert text.startswith(f"[FIRING] feature_drift on model {demo_tags['classifier']}: feature {SHIFTED} drifted")
    perf = bodies[("performance_drop", "firing")]
    assert perf["value"] < 0.5 and perf["reference"] > 0.9 and perf["threshold"]["bound"].startswith("band")
    for alert in (drift, perf):
        assert alert["trace_ids"], alert
        assert set(alert["trace_ids"]) <= set(drift_traces)        # requests of the drifted phase
        assert alert["trace_links"] == [f"{phoenix.http_endpoint}/traces/{t}" for t in alert["trace_ids"]]
        for t in alert["trace_ids"]:                                # and they exist in the trace backend
            assert phoenix.wait_for_spans(t, min_count=1, timeout=60), t
    assert final["firing"] == [] and final["outbox"]["pending"] == 0 and final["outbox"]["failed"] == 0
    assert 'vigil_alerts_transitions_total{rule="feature_drift",state="firing"} 1.0' in metrics
    assert 'vigil_alerts_notifications_total{result="delivered",sink="webhook"}' in metrics


def worker_pids(server) -> list[int]:
    return [p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)
            if "python" in (p.name() or "") and p.pid != server.proc.pid]


def test_two_workers_one_delivery_per_transition_even_when_the_sender_dies(tmp_path, demo_tags, demo_rows,
                                                                          demo_tags_reference_sd):
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    rule = [{"name": "texture", "series": "drift.score", "label": SHIFTED, "outside_band": True,
             "for_windows": 1, "resolve_windows": 1}]
    with Receiver() as rx:
        env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WORKERS": "2", "VIGIL_WINDOW_ROWS": "60",
               "VIGIL_ALERT_DEFAULT_RULES": "false", "VIGIL_ALERT_RULES": json.dumps(rule),
               "VIGIL_ALERT_WEBHOOKS": json.dumps([{"url": rx.url}])}
        with serve(tmp_path, env) as server, server.client(timeout=30) as c:
            shift = 3 * demo_tags_reference_sd[SHIFTED]
            traffic(c, demo_rows, rng, 9, shift=shift)
            assert wait_for(lambda: ("texture", SHIFTED, "firing") in notices(rx)), notices(rx)
            store = Store(f"sqlite:///{data / 'vigil.db'}")
            sink = f"webhook:127.0.0.1:{urlsplit(rx.url).port}"     # named by host, never by the URL's path
            # killed once its delivery is recorded (killed between the POST and the record, it
            # would be delivered again when its lease ends: at least once, by design)
            (row,) = wait_for(lambda: [r for r in store.alerts.outbox_rows(demo_tags["classifier"])
                                       if r["key"].endswith(f"firing#{sink}") and r["delivered_at"] is not None])
            sender = int(row["claimed_by"].split(":")[1])
            assert sender in worker_pids(server)
            os.kill(sender, signal.SIGKILL)                      # the worker that sent the firing dies
            time.sleep(1.0)
            with server.client(timeout=30) as fresh:             # not a keep-alive socket of the dead worker
                traffic(fresh, demo_rows, rng, 9)               # served by the survivor (or a respawn)
            assert wait_for(lambda: ("texture", SHIFTED, "resolved") in notices(rx)), notices(rx)
            # a duplicate is an outbox row delivered again, which happens only to a row whose
            # delivery was never recorded (the dead sender's lease ends): once none is pending,
            # no duplicate can come
            assert wait_for(lambda: store.alerts.outbox_counts(demo_tags["classifier"])["pending"] == 0, timeout=60), \
                store.alerts.outbox_rows(demo_tags["classifier"])
            rows = store.alerts.outbox_rows(demo_tags["classifier"])
            store.dispose()
    got = Counter(notices(rx))
    assert got == Counter({("texture", SHIFTED, "firing"): 1, ("texture", SHIFTED, "resolved"): 1}), got
    mine = [r for r in rows if r["key"].endswith(f"#{sink}")]
    assert len(mine) == 2 and all(r["delivered_at"] is not None and not r["failed"] for r in mine), mine
    resolved = next(r for r in mine if r["key"].endswith(f"resolved#{sink}"))
    assert int(resolved["claimed_by"].split(":")[1]) != sender


def vigil_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_operators_silence_acknowledge_and_rebaseline(tmp_path, demo_tags, demo_rows, demo_tags_reference_sd):
    rng = np.random.default_rng(11)
    rule = [{"name": "texture", "series": "drift.score", "label": SHIFTED, "outside_band": True,
             "for_windows": 1, "resolve_windows": 1, "repeat_seconds": 1}]
    token = "op-token"
    with Receiver() as rx:
        env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "60", "VIGIL_API_TOKEN": token,
               "VIGIL_ALERT_DEFAULT_RULES": "false", "VIGIL_ALERT_RULES": json.dumps(rule),
               "VIGIL_ALERT_WEBHOOKS": json.dumps([{"url": rx.url}])}
        auth = {"Authorization": f"Bearer {token}"}
        with serve(tmp_path, env) as server, server.client(timeout=30, headers=auth) as c:
            anonymous = httpx.post(server.url + "/admin/silences", json={"rule": "texture", "seconds": 60}, timeout=10)
            assert anonymous.status_code == 401
            assert c.post("/admin/silences", json={"rule": "nope", "seconds": 60}).status_code == 422
            assert c.post("/admin/rebaseline", json={"window_id": 999}).status_code == 404
            cli_env = {"VIGIL_API_TOKEN": token}
            url = ("--url", server.url)
            out = vigil_cli("alerts", "silence", "texture", *url, "--seconds", "3600", "--reason", "planned migration",
                            "--json", env=cli_env)
            assert out.returncode == 0, out.stderr
            silence_id = json.loads(out.stdout)["id"]

            shift = 3 * demo_tags_reference_sd[SHIFTED]
            traffic(c, demo_rows, rng, 6, shift=shift)
            assert wait_for(lambda: c.get("/monitoring/alerts").json()["firing"])  # fires...
            # the transition and its notifications are one transaction, and a tick begun after it
            # would announce an alert whose silence ended: after one, still nothing queued
            alerts = tick_after(c, time.time())
            assert queued(alerts) == 0 and rx.delivered() == []              # ...silently

            out = vigil_cli("alerts", "unsilence", str(silence_id), *url, env=cli_env)
            assert out.returncode == 0, out.stderr
            assert wait_for(lambda: notices(rx).count(("texture", SHIFTED, "firing")) >= 1)
            assert wait_for(lambda: notices(rx).count(("texture", SHIFTED, "repeat")) >= 1, timeout=30)

            out = vigil_cli("alerts", "ack", "texture", *url, "--by", "alice", env=cli_env)
            assert out.returncode == 0, out.stderr
            acked = time.time()
            # a repeat queued before the acknowledgment may still be on its way: let it arrive
            total = queued(settled(c))
            seen = len(rx.delivered())
            # a tick begun over repeat_seconds after the ack would repeat an unacknowledged alert
            # (the last repeat was queued before the ack); after it, nothing new queued or delivered
            alerts = tick_after(c, acked + 1.0)
            assert queued(alerts) == total and alerts["outbox"]["pending"] == 0, alerts
            assert len(rx.delivered()) == seen                                # acknowledged: no more repeats
            firing = c.get("/monitoring/alerts").json()["firing"]
            assert firing[0]["acknowledged_by"] == "alice"

            # the shifted traffic is the new normal: adopt its newest window as the reference
            newest = c.get("/monitoring/drift?limit=1").json()["windows"][0]["window_id"]
            out = vigil_cli("alerts", "rebaseline", str(newest), *url, "--json", env=cli_env)
            assert out.returncode == 0, out.stderr
            adopted = json.loads(out.stdout)
            assert adopted["window_id"] == newest
            assert wait_for(lambda: c.get("/monitoring/status").json()["drift_reference"]
                            == {"version": adopted["version"], "window_id": newest, "rows": adopted["rows"]},
                            timeout=30, every=0.2), c.get("/monitoring/status").json()["drift_reference"]
            before = c.get("/monitoring/drift?limit=1").json()["windows"][0]["window_id"]
            traffic(c, demo_rows, rng, 6, shift=shift)
            assert wait_for(lambda: c.get("/monitoring/drift?limit=1").json()["windows"][0]["window_id"] > before + 1)
            after = c.get("/monitoring/drift?limit=3").json()["windows"]
            assert all(SHIFTED not in w["drifted"] for w in after if w["window_id"] > before)
            assert wait_for(lambda: ("texture", SHIFTED, "resolved") in notices(rx))
            listing = vigil_cli("alerts", "list", *url, env=cli_env)
            assert listing.returncode == 0 and "texture" in listing.stdout


def test_error_rate_alert_fires_on_failing_requests_with_their_traces(tmp_path, test_tags, demo_rows):
    """A model that fails on every request: no rows reach the monitor, yet the windows
    close by time and the default error-rate rule fires with the failed requests' traces,
    then resolves when requests succeed again."""
    with Receiver() as rx:
        env = {"VIGIL_MODEL": test_tags["exploding"], "VIGIL_WINDOW_SECONDS": "2", "VIGIL_WINDOW_ROWS": "1000",
               "VIGIL_ALERT_WEBHOOKS": json.dumps([{"url": rx.url}])}
        with serve(tmp_path, env) as server, server.client(timeout=30) as c:
            failed = []
            bad = {**demo_rows[0], "mean_radius": 4242.0}
            deadline = time.monotonic() + 60
            while ("error_rate", None, "firing") not in notices(rx) and time.monotonic() < deadline:
                r = c.post("/predict", json={"instances": [bad]})
                assert r.status_code == 500
                failed.append(r.headers["traceparent"].split("-")[1])
                time.sleep(0.05)
            assert ("error_rate", None, "firing") in notices(rx), notices(rx)
            deadline = time.monotonic() + 60
            while ("error_rate", None, "resolved") not in notices(rx) and time.monotonic() < deadline:
                assert c.post("/predict", json={"instances": demo_rows[:3]}).status_code == 200
                time.sleep(0.05)
    assert Counter(notices(rx))[("error_rate", None, "resolved")] == 1
    body = next(b for b in rx.delivered() if b["status"] == "firing")
    alert = body["alert"]
    assert alert["value"] == 1.0 and alert["reference"] == 0.01
    assert body["text"].startswith(f"[FIRING] error_rate on model {test_tags['exploding']}: serving.error_rate ")
    assert "1 (reference 0.01)" in body["text"] and alert["at_iso"].endswith("Z")
    assert alert["trace_ids"] and set(alert["trace_ids"]) <= set(failed)
    assert "failures" in alert["threshold"]["bound"]
    assert not [n for n in notices(rx) if n[0] in ("feature_drift", "performance_drop")]


def test_a_slow_webhook_does_not_slow_requests(tmp_path, demo_tags, demo_rows):
    """The receiver takes 10 s to answer; requests go on at their usual speed meanwhile."""
    rule = [{"name": "always", "series": "drift.share", "above": -1}]
    with Receiver(delay=10) as rx:
        env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "40",
               "VIGIL_ALERT_DEFAULT_RULES": "false", "VIGIL_ALERT_RULES": json.dumps(rule),
               "VIGIL_ALERT_WEBHOOKS": json.dumps([{"url": rx.url, "timeout": 15}])}
        with serve(tmp_path, env) as server, server.client(timeout=30) as c:
            for _ in range(3):
                assert c.post("/predict", json={"instances": demo_rows[:20]}).status_code == 200
            assert wait_for(lambda: c.get("/monitoring/alerts").json()["firing"])
            time.sleep(0.5)                                   # the notifier is now waiting on the receiver
            took = []
            for _ in range(30):
                t0 = time.monotonic()
                assert c.post("/predict", json={"instances": demo_rows[:5]}).status_code == 200
                took.append(time.monotonic() - t0)
            assert rx.delivered() == []                       # the webhook has not answered yet...
            assert max(took) < 1.0, took                      # ...and no request waited on it
            assert wait_for(lambda: rx.delivered(), timeout=30)
    assert [b["alert"]["rule"] for b in rx.delivered()] == ["always"]


def test_a_firing_alert_survives_kill_9_without_firing_twice(tmp_path, demo_tags, demo_rows, demo_tags_reference_sd):
    """kill -9 of the whole server with an alert firing; after a restart on the same store
    the alert is still firing, drifted traffic does not announce it again, and clean
    traffic resolves it once."""
    from tests.support.server import kill_hard

    rng = np.random.default_rng(13)
    rule = [{"name": "texture", "series": "drift.score", "label": SHIFTED, "outside_band": True,
             "for_windows": 1, "resolve_windows": 1}]
    shift = 3 * demo_tags_reference_sd[SHIFTED]
    with Receiver() as rx:
        env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "60",
               "VIGIL_ALERT_DEFAULT_RULES": "false", "VIGIL_ALERT_RULES": json.dumps(rule),
               "VIGIL_ALERT_WEBHOOKS": json.dumps([{"url": rx.url}])}
        with serve(tmp_path, env) as server, server.client(timeout=30) as c:
            traffic(c, demo_rows, rng, 6, shift=shift)
            assert wait_for(lambda: ("texture", SHIFTED, "firing") in notices(rx)), notices(rx)
            kill_hard(server.proc)                                   # no shutdown hooks run
        with serve(tmp_path, env) as server, server.client(timeout=30) as c:
            firing = c.get("/monitoring/alerts").json()["firing"]
            assert [(a["rule"], a["instance"]) for a in firing] == [("texture", SHIFTED)]
            before = c.get("/monitoring/drift?limit=1").json()["windows"][0]["window_id"]
            traffic(c, demo_rows, rng, 6, shift=shift)               # still drifted: still firing
            assert wait_for(lambda: c.get("/monitoring/drift?limit=1").json()["windows"][0]["window_id"]
                            >= before + 2)
            time.sleep(1.5)
            assert notices(rx).count(("texture", SHIFTED, "firing")) == 1
            traffic(c, demo_rows, rng, 6)
            assert wait_for(lambda: ("texture", SHIFTED, "resolved") in notices(rx)), notices(rx)
    assert Counter(notices(rx)) == Counter({("texture", SHIFTED, "firing"): 1, ("texture", SHIFTED, "resolved"): 1})


def references(url: str, auth: dict, version: int, timeout: float = 30.0) -> dict[int, dict]:
    """Each worker's drift reference by pid, once two workers have answered and both judge by
    ``version`` (fresh connections, so that the answers spread over the workers)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while not (len(seen) == 2 and all(r["version"] == version for r in seen.values())):
        assert time.monotonic() < deadline, seen
        s = httpx.get(url + "/monitoring/status", headers=auth, timeout=10).json()
        seen[s["worker_pid"]] = s["drift_reference"]
    return seen


def evaluated_by(url: str, auth: dict, timeout: float = 30.0) -> dict[int, int]:
    """Windows each of the two workers has evaluated since it started."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < 2:
        assert time.monotonic() < deadline, seen
        s = httpx.get(url + "/monitoring/status", headers=auth, timeout=10).json()
        seen[s["worker_pid"]] = s["windows"]["evaluated_by_this_worker"]
    return seen


def test_a_rebaseline_reaches_both_workers_and_survives_a_restart(tmp_path, demo_tags, demo_rows,
                                                                  demo_tags_reference_sd):
    """Shifted traffic drifts against the model's reference; once an operator adopts a
    shifted window, both workers judge the next shifted windows against it (not drifted),
    and so does the restarted server on the same data."""
    rng = np.random.default_rng(17)
    token = "op-token"
    auth = {"Authorization": f"Bearer {token}"}
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WORKERS": "2", "VIGIL_WINDOW_ROWS": "60",
           "VIGIL_API_TOKEN": token, "VIGIL_ALERT_DEFAULT_RULES": "false"}
    shift = 3 * demo_tags_reference_sd[SHIFTED]

    def shifted_window(url: str) -> None:  # 60 rows, a fresh connection per request
        for _ in range(3):
            with httpx.Client(base_url=url, headers=auth, timeout=30) as fresh:
                traffic(fresh, demo_rows, rng, 1, shift=shift)

    def windows(url: str) -> list[dict]:
        return httpx.get(url + "/monitoring/drift?limit=20", headers=auth, timeout=10).json()["windows"]

    with serve(tmp_path, env) as server:
        shifted_window(server.url)
        assert wait_for(lambda: windows(server.url), timeout=30)
        (first,) = windows(server.url)
        assert SHIFTED in first["drifted"]                        # against the model's own reference
        res = httpx.post(server.url + "/admin/rebaseline", json={"window_id": first["window_id"]}, headers=auth,
                         timeout=30)
        assert res.status_code == 201, res.text
        version = res.json()["version"]
        adopted = {"version": version, "window_id": first["window_id"], "rows": res.json()["rows"]}
        assert set(map(json.dumps, references(server.url, auth, version).values())) == {json.dumps(adopted)}

        # shifted windows until both workers have judged one: none drifted in the moved feature
        start = evaluated_by(server.url, auth)
        for k in range(1, 7):
            shifted_window(server.url)
            assert wait_for(lambda k=k: windows(server.url)[0]["window_id"] >= first["window_id"] + k, timeout=30)
            now = evaluated_by(server.url, auth)
            if set(now) == set(start) and all(now[p] > start[p] for p in start):
                break
        assert set(now) == set(start) and all(now[p] > start[p] for p in start), (start, now)
        judged = [w for w in windows(server.url) if w["window_id"] > first["window_id"]]
        assert judged and all(SHIFTED not in w["drifted"] for w in judged), judged

    with serve(tmp_path, env) as server:                         # restarted on the same data
        assert set(map(json.dumps, references(server.url, auth, version).values())) == {json.dumps(adopted)}
        last = windows(server.url)[0]["window_id"]
        shifted_window(server.url)
        assert wait_for(lambda: windows(server.url)[0]["window_id"] > last, timeout=30)
        assert SHIFTED not in windows(server.url)[0]["drifted"]
