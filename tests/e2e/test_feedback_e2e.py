"""End-to-end feedback: durability under kill -9, 503 when the store cannot commit,
caller ids, privacy rules, and performance over time with a label flip (CBPE beside it)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid

import httpx
import numpy as np
import pytest

from tests.support.server import kill_hard, serve

pytestmark = pytest.mark.e2e
from tests.support.backends import BACKENDS, PG


def store_env(backend: str, tmp_path) -> tuple[dict, str]:
    url = f"sqlite:///{tmp_path / 'data' / 'vigil.db'}" if backend == "sqlite" else PG
    return {"VIGIL_STORE_URL": url}, url


@pytest.mark.parametrize("backend", BACKENDS)
def test_acknowledged_outcomes_survive_kill_9(tmp_path, demo_tags, backend):
    """Fault: SIGKILL of the whole server while 4 clients post feedback (10 outcomes a
    request, not yet matched to predictions). Lost: nothing acknowledged."""
    env, url = store_env(backend, tmp_path)
    env["VIGIL_MODEL"] = demo_tags["classifier"]
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(server_url: str):
        with httpx.Client(base_url=server_url, timeout=10) as c:
            while not stop.is_set():
                rid = uuid.uuid4().hex
                body = {"outcomes": [{"request_id": rid, "index": i, "outcome": i % 2} for i in range(10)],
                        "allow_early": True}  # ids no prediction carries: kept only when asked
                try:
                    r = c.post("/feedback", json=body)
                except httpx.HTTPError:
                    continue  # the server died mid-request: not acknowledged, may or may not be stored
                if r.status_code == 200:
                    with lock:
                        acked.extend(f"r:{rid}:{i}" for i in range(10))

    with serve(tmp_path, env) as server:
        threads = [threading.Thread(target=client, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30  # killed under load, once a fair number were acknowledged
        while len(acked) < 300 and time.monotonic() < deadline and all(t.is_alive() for t in threads):
            time.sleep(0.05)
        kill_hard(server.proc)  # supervisor and worker: no shutdown hooks, no flush
        stop.set()
        for t in threads:
            t.join(15)
    assert len(acked) >= 100, "the clients should have been acknowledged many outcomes before the kill"
    with serve(tmp_path, env) as server:  # restart on the same store
        assert httpx.get(server.url + "/monitoring/performance", timeout=10).status_code == 200
    from sqlalchemy import create_engine, func, select

    from monitoring.store.tables import outcomes

    engine = create_engine(url)  # the test's own connection: the store exposes no SQL
    with engine.connect() as c:
        rows = c.execute(select(outcomes.c.okey, func.count()).where(
            outcomes.c.model == demo_tags["classifier"], outcomes.c.okey.in_(acked)).group_by(outcomes.c.okey)).all()
    engine.dispose()
    counts = dict(rows)
    missing = [k for k in acked if k not in counts]
    assert not missing, f"{len(missing)} acknowledged outcomes lost"
    assert all(n == 1 for n in counts.values())  # and none stored twice


def test_feedback_is_503_when_the_store_cannot_commit_and_predict_keeps_serving(tmp_path, demo_tags, demo_rows):
    """Fault: another process holds an exclusive lock on the SQLite store. /feedback must
    not acknowledge what it cannot store; /predict must not notice."""
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_STORE_TIMEOUT": "1"}
    with serve(tmp_path, env) as server, server.client() as c:
        db = tmp_path / "data" / "vigil.db"
        body = {"outcomes": [{"request_id": "a" * 32, "index": 0, "outcome": 1}], "allow_early": True}
        assert c.post("/feedback", json=body).status_code == 200
        blocker = sqlite3.connect(db, timeout=1, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            r = c.post("/feedback", json={"outcomes": [{"request_id": "b" * 32, "index": 0, "outcome": 1}],
                                          "allow_early": True})
            assert r.status_code == 503 and "nothing was stored" in r.json()["error"]
            assert r.headers.get("retry-after")
            t = time.perf_counter()
            for _ in range(5):
                assert c.post("/predict", json={"instances": demo_rows[:2]}).status_code == 200
            assert time.perf_counter() - t < 5  # predictions never wait on the store
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        r = c.post("/feedback", json={"outcomes": [{"request_id": "b" * 32, "index": 0, "outcome": 1}],
                                      "allow_early": True})
        assert r.status_code == 200 and r.json()["accepted"] == 1  # the 503'd outcome was really not stored
        deadline = time.monotonic() + 20
        while c.get("/monitoring/status").json()["windows"]["rows_counted"] < 10 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert c.get("/monitoring/status").json()["windows"]["rows_counted"] == 10  # monitoring resumed
        assert 'result="unavailable"' in c.get("/metrics").text


def test_feedback_by_caller_ids_and_bad_feedback(tmp_path, demo_tags, demo_rows):
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_INSTANCE_ID_FIELD": "transaction_id",
           "VIGIL_MAX_FEEDBACK_ITEMS": "50", "VIGIL_PERFORMANCE_INTERVAL": "0.5"}
    with serve(tmp_path, env) as server, server.client() as c:
        rows = [{**r, "transaction_id": f"txn-{i}"} for i, r in enumerate(demo_rows[:4])]
        r = c.post("/predict", json={"instances": rows}, headers={"X-Request-ID": "order-77"})
        assert r.status_code == 200
        out = [{"instance_id": "txn-0", "outcome": 1}, {"instance_id": "txn-1", "outcome": 0},
               {"client_request_id": "order-77", "index": 2, "outcome": 1}]
        # straight after /predict: the prediction may not be logged yet, so caller ids are
        # allowed to wait for it (without allow_early an id no prediction carries is 'unknown')
        res = c.post("/feedback", json={"outcomes": out, "allow_early": True})
        assert res.status_code == 200 and res.json()["accepted"] == 3
        assert c.post("/feedback", json={"outcomes": out}).json()["duplicate"] == 3
        deadline = time.monotonic() + 15
        while c.get("/monitoring/performance").json()["outcomes"]["matched"] < 3 and time.monotonic() < deadline:
            time.sleep(0.3)  # outcomes that beat their prediction into the log are joined in the background
        assert c.get("/monitoring/performance").json()["outcomes"] == {"matched": 3, "pending": 0, "expired": 0,
                                                                       "conflicting": 0}
        for body, status, needle in [
            ({"outcomes": []}, 422, "empty"),
            ({"outcomes": [{"request_id": "x", "index": 0, "outcome": "1"}]}, 422, "not a class"),
            ({"outcomes": [{"request_id": "x", "index": 0, "outcome": 1, "extra": 1}]}, 422, "unknown field"),
            ({"outcomes": [{"request_id": "x", "index": 0, "outcome": 1}] * 51}, 413, "at most 50"),
            ({"outcomes": [{"instance_id": "txn-0", "outcome": 0}]}, 409, "contradicts"),
        ]:
            res = c.post("/feedback", json=body)
            assert res.status_code == status and needle in res.json()["error"], res.text


def logged_rows(tmp_path) -> list:
    db = sqlite3.connect(tmp_path / "data" / "vigil.db", timeout=5)
    try:
        return db.execute("SELECT features FROM vigil_predictions").fetchall()
    except sqlite3.OperationalError:  # no table yet: the store is still being created
        return []
    finally:
        db.close()


def test_privacy_rules_keep_values_out_of_the_log_and_spans(tmp_path, demo_tags, demo_rows):
    env = {"VIGIL_MODEL": demo_tags["classifier"], "OTEL_TRACES_EXPORTER": "console", "VIGIL_LOG_SAMPLE_RATE": "1",
           "VIGIL_PRIVACY": json.dumps({"mean_radius": "drop", "mean_texture": "hash"})}
    secret_row = {**demo_rows[0], "mean_radius": 12.3456789, "mean_texture": 21.0987654}
    with serve(tmp_path, env) as server, server.client() as c:
        assert c.post("/predict", json={"instances": [secret_row]}).status_code == 200
        deadline = time.monotonic() + 10  # the row reaches the prediction log on the monitor thread
        while not logged_rows(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
    ((features,),) = logged_rows(tmp_path)
    logged = json.loads(features)
    assert "mean_radius" not in logged
    assert logged["mean_texture"] != 21.0987654 and len(logged["mean_texture"]) == 16
    assert logged["mean_area"] == demo_rows[0]["mean_area"]
    assert "12.3456789" not in server.log() and "21.0987654" not in server.log()


def test_performance_leaves_its_band_only_after_labels_flip(tmp_path, demo_tags):
    """Seeded: traffic drawn from the validation split with its true labels; from window 8
    on, 15 % of the labels are flipped. Accuracy leaves its band in exactly those windows;
    CBPE tracks the clean windows and stays flat through the flip (its blind spot)."""
    from models.demo import demo_frames

    _, valid = demo_frames("classifier")
    X = valid.drop(columns=["target"]).to_dict("records")
    y = valid["target"].to_numpy()
    rng = np.random.default_rng(2024)
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_WINDOW_ROWS": "200", "VIGIL_WINDOW_SECONDS": "3600",
           "VIGIL_PERFORMANCE_INTERVAL": "0.5"}
    clean_windows, flipped_windows = range(0, 8), range(8, 12)
    with serve(tmp_path, env) as server, server.client() as c:
        for w in range(12):
            for _ in range(10):
                idx = rng.integers(0, len(X), size=20)
                r = c.post("/predict", json={"instances": [X[i] for i in idx]}).json()
                labels = y[idx].copy()
                if w in flipped_windows:
                    flip = rng.random(20) < 0.15
                    labels[flip] = 1 - labels[flip]
                body = {"outcomes": [{"request_id": r["request_id"], "index": j, "outcome": int(labels[j])}
                                     for j in range(20)]}
                assert c.post("/feedback", json=body).status_code == 200
        deadline = time.monotonic() + 60
        while True:
            perf = c.get("/monitoring/performance?limit=50").json()["windows"]
            done = {p["window_id"]: p for p in perf if p.get("labelled") == 200 and p.get("realized")}
            if len(done) == 12 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert sorted(done) == list(range(12))
    below = {w for w, p in done.items() if p["band_status"]["accuracy"] == "below"}
    assert below == set(flipped_windows)
    within = sum(abs(done[w]["estimated"]["accuracy"]["value"] - done[w]["realized"]["accuracy"])
                 <= 2 * done[w]["estimated"]["accuracy"]["se"] for w in clean_windows)
    assert within / len(clean_windows) >= 0.9
    est_clean = np.mean([done[w]["estimated"]["accuracy"]["value"] for w in clean_windows])
    est_flip = np.mean([done[w]["estimated"]["accuracy"]["value"] for w in flipped_windows])
    real_clean = np.mean([done[w]["realized"]["accuracy"] for w in clean_windows])
    real_flip = np.mean([done[w]["realized"]["accuracy"] for w in flipped_windows])
    assert abs(est_flip - est_clean) < 0.02 and real_flip < real_clean - 0.08
