"""Issue 12, replayed against served models: each attack as it was reported (scaled down to
seconds), and what must hold now. Plus issue 18 item 7 (typos in feedback, every error of
a batch). Servers on 127.0.0.1 only; every loop is bounded.

Server ``guarded``: a token (given with a trailing newline, item 8), the monitoring views
protected, a 64 KiB body limit, a 1 s request-head deadline, caller instance ids.
Server ``open``: no token (the default), caller instance ids.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.server import serve

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-token-value-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 65536
ID_FIELD = "transaction_id"


def own_home(tmp: Path, shared: Path) -> str:
    """A BENTOML_HOME of its own (its own Prometheus multiprocess files) with the session's models."""
    home = tmp / "bentoml-home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(shared / "models")
    return str(home)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, demo_tags, bentoml_home):
    configs = {
        "guarded": {"VIGIL_API_TOKEN": TOKEN + "\n", "VIGIL_PROTECT_MONITORING": "true",
                    "VIGIL_MAX_BODY_BYTES": str(LIMIT), "VIGIL_HEADER_TIMEOUT": "1", "VIGIL_STORE_TIMEOUT": "1",
                    "VIGIL_PERFORMANCE_INTERVAL": "0.5"},
        "open": {"VIGIL_PERFORMANCE_INTERVAL": "0.5"},
    }
    with ExitStack() as stack:
        started, errors = {}, []

        def start(name, env):
            tmp = tmp_path_factory.mktemp(f"security-{name}")
            env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_INSTANCE_ID_FIELD": ID_FIELD,
                   "BENTOML_HOME": own_home(tmp, bentoml_home), **env}
            try:
                server = stack.enter_context(serve(tmp, env))
                server.db = tmp / "data" / "vigil.db"
                started[name] = server
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=item) for item in configs.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        yield started


@pytest.fixture(scope="module")
def guarded(servers):
    return servers["guarded"]


@pytest.fixture(scope="module")
def open_server(servers):
    return servers["open"]


def rows(demo_rows, n, ids=None):
    return [{**demo_rows[i], ID_FIELD: ids[i] if ids else None} for i in range(n)]


def query(db: Path, sql: str, *args) -> list[tuple]:
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_logged(server, request_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not query(server.db, "SELECT 1 FROM vigil_predictions WHERE request_id = ?", request_id):
        assert time.monotonic() < deadline, f"prediction {request_id} not logged in {timeout}s"
        time.sleep(0.2)


def outcomes_view(c, headers=None) -> dict:
    return c.get("/monitoring/performance", headers=headers or {}).json()["outcomes"]


def worker_rss(server, headers=None) -> float:
    pid = httpx.get(server.url + "/monitoring/status", headers=headers or {}, timeout=30).json()["worker_pid"]
    with open(f"/proc/{pid}/status") as fh:
        return next(float(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


def raw_connection(server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = s.recv(65536)
        except OSError:  # reset after the answer: keep what arrived
            break
        if not chunk:
            break
        data += chunk
    return data


# -- 1. body limit bypass --------------------------------------------------------------------

def test_1_chunked_body_with_a_small_content_length_is_refused_unread(guarded, demo_rows):
    """Reported: Transfer-Encoding: chunked + Content-Length: 5 and a 512 MiB body: 200, worker
    RSS +900 MiB. Here 64 MiB against a 64 KiB limit: 400 at once, connection closed, RSS flat."""
    peak = worker_rss(guarded, AUTH)
    with raw_connection(guarded) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")
        chunk = b"[" * 1048576
        sent = 0
        try:
            for _ in range(64):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += 1
        except OSError:
            pass  # the server closed the connection: what we want
        head = read_response(s)
    assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head.lower(), head[:300]
    assert b"Transfer-Encoding and Content-Length" in head
    assert worker_rss(guarded, AUTH) < peak + 32e6
    # chunked alone is counted as it streams: 413 once past the limit
    with raw_connection(guarded) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(64):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass
        assert read_response(s).startswith(b"HTTP/1.1 413 ")
    assert worker_rss(guarded, AUTH) < peak + 32e6
    with httpx.Client(base_url=guarded.url) as c:
        assert c.post("/predict", json={"instances": rows(demo_rows, 1)}).status_code == 200


# -- 2. label hijacking through caller ids ------------------------------------------------------

def test_2_anyone_reusing_a_caller_id_cannot_take_the_token_holders_labels(guarded, demo_rows):
    """Reported: with a token and /predict open, anyone predicting with the victim's
    X-Request-ID (or instance id) had the victim's authenticated feedback join their
    prediction. Caller ids are now kept only from requests that present the token, and a
    caller id names its first prediction."""
    order, txn = f"order-{uuid.uuid4().hex[:8]}", f"txn-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        # the attacker first, then after: neither is kept
        before = c.post("/predict", json={"instances": rows(demo_rows, 2, [txn, None])},
                        headers={"X-Request-ID": order})
        assert before.status_code == 200 and "not kept" in before.headers["x-vigil-caller-ids"]
        victim = c.post("/predict", json={"instances": rows(demo_rows, 2, [txn, None])},
                        headers={"X-Request-ID": order, **AUTH})
        assert victim.status_code == 200 and "x-vigil-caller-ids" not in victim.headers
        after = c.post("/predict", json={"instances": rows(demo_rows, 2, [txn, None])},
                       headers={"X-Request-ID": order})
        assert after.status_code == 200
        # a wrong token on the open /predict is refused, not served anonymously
        assert c.post("/predict", json={"instances": rows(demo_rows, 1)},
                      headers={"Authorization": "Bearer guess"}).status_code == 401
        for r in (before, victim, after):
            wait_logged(guarded, r.json()["request_id"])
        fb = c.post("/feedback", headers=AUTH, json={"outcomes": [
            {"client_request_id": order, "index": 1, "outcome": 1}, {"instance_id": txn, "outcome": 0}]})
        assert fb.status_code == 200 and fb.json()["accepted"] == 2, fb.text
    joined = {r[0] for r in query(guarded.db, "SELECT request_id FROM vigil_outcomes WHERE okey IN (?, ?)",
                                  f"c:{order}:1", f"i:{txn}")}
    assert joined == {victim.json()["request_id"]}


# -- 3. early outcomes starved by junk ----------------------------------------------------------

def test_3_an_early_outcome_is_joined_promptly_however_much_junk_waits(open_server, demo_rows):
    """Reported: with 6,000 outcomes pending for ids that never appear, a new early outcome
    was still pending 30 s after its prediction arrived (pending outcomes were matched
    from the first 5,000 unmatched rows). 6,000 here; joined in seconds."""
    key = f"order-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=open_server.url, timeout=30) as c:
        junk = [{"client_request_id": f"junk-{uuid.uuid4().hex}", "index": 0, "outcome": 1} for _ in range(6000)]
        assert c.post("/feedback", json={"outcomes": junk, "allow_early": True}).json()["pending"] == 6000
        r = c.post("/feedback", json={"outcomes": [{"client_request_id": key, "index": 0, "outcome": 1}],
                                      "allow_early": True})
        assert r.json()["pending"] == 1
        assert c.post("/predict", json={"instances": rows(demo_rows, 1)}, headers={"X-Request-ID": key}).status_code == 200
        start, deadline = time.monotonic(), time.monotonic() + 15
        while not query(open_server.db, "SELECT 1 FROM vigil_outcomes WHERE okey = ? AND matched", f"c:{key}:0"):
            assert time.monotonic() < deadline, "the early outcome was not joined"
            time.sleep(0.2)
    print(f"early outcome joined {time.monotonic() - start:.1f}s after its prediction, 6,000 junk waiting")


# -- 4. unknown paths and Prometheus series ----------------------------------------------------

def series(text: str, needle: str = "endpoint=") -> set[str]:
    """The label sets (name{labels}, values dropped) of the exposition lines containing ``needle``."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if needle in line and not line.startswith("#")}


def test_4_unknown_paths_create_no_series(guarded):
    """Reported: 4,000 GET /nope/<uuid> grew /metrics from 29 KB to 16.6 MB. 400 here:
    every series is labelled by route, unknown paths (and unknown methods) by 'other'."""
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        c.get("/nope/warm-up")  # the 'other' series exist from here on
        before = c.get("/metrics").text
        for i in range(400):
            assert c.get(f"/nope/{uuid.uuid4()}").status_code == 404
        after = c.get("/metrics").text
    assert "/nope/" not in after and 'endpoint="other"' in after
    assert series(after) == series(before)
    grown = sum(map(len, series(after, "bentoml_"))) - sum(map(len, series(before, "bentoml_")))
    assert grown == 0


# -- 5. contradictory labels under different keys --------------------------------------------

def test_5_one_prediction_has_one_label_whatever_key_it_is_posted_under(guarded, demo_rows):
    order, txn = f"order-{uuid.uuid4().hex[:8]}", f"txn-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=guarded.url, timeout=30, headers=AUTH) as c:
        rid = c.post("/predict", json={"instances": rows(demo_rows, 1, [txn])},
                     headers={"X-Request-ID": order}).json()["request_id"]
        wait_logged(guarded, rid)
        assert c.post("/feedback", json={"outcomes": [{"request_id": rid, "index": 0, "outcome": 1}]}).json()[
            "accepted"] == 1
        again = c.post("/feedback", json={"outcomes": [{"client_request_id": order, "index": 0, "outcome": 1}]})
        assert again.json()["duplicate"] == 1
        r = c.post("/feedback", json={"outcomes": [{"instance_id": txn, "outcome": 0}]})
        assert r.status_code == 409 and "already stored for this prediction" in r.json()["error"]
    assert query(guarded.db, "SELECT count(*) FROM vigil_outcomes WHERE request_id = ?", rid) == [(1,)]


# -- 6. protection asked for without a token ---------------------------------------------------

def test_6_protect_predict_without_a_token_refuses_to_start(tmp_path, demo_tags):
    with pytest.raises(RuntimeError) as e:
        with serve(tmp_path, {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_PROTECT_PREDICT": "true"},
                   ready_timeout=60):
            pass
    assert "protect_predict needs VIGIL_API_TOKEN" in str(e.value)


# -- 7. labels locked in ahead of time ----------------------------------------------------------

def test_7_labels_posted_before_their_prediction_can_be_corrected(open_server, demo_rows):
    """Reported: without a token anyone could post outcomes for caller ids that did not exist
    yet; the real outcome was then refused with 409 for ever. Now such outcomes are refused
    as unknown unless the caller insists, and if kept they are provisional."""
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=open_server.url, timeout=30) as c:
        ahead = [{"client_request_id": f"order-{tag}-{i}", "index": 0, "outcome": 1} for i in range(2, 102)]
        r = c.post("/feedback", json={"outcomes": ahead}).json()
        assert (r["accepted"], r["unknown"]) == (0, 100) and "allow_early" in r["errors"][0]["message"]
        assert c.post("/feedback", json={"outcomes": ahead, "allow_early": True}).json()["pending"] == 100
        rid = c.post("/predict", json={"instances": rows(demo_rows, 1)},
                     headers={"X-Request-ID": f"order-{tag}-2"}).json()["request_id"]
        wait_logged(open_server, rid)
        real = c.post("/feedback", json={"outcomes": [{"request_id": rid, "index": 0, "outcome": 0}]})
        assert real.status_code == 200 and real.json()["replaced"] == 1, real.text
        refused = c.post("/feedback", json={"outcomes": [ahead[0]]})  # the early label cannot come back
        assert refused.status_code == 409
    assert query(open_server.db, "SELECT class_code FROM vigil_outcomes WHERE request_id = ? AND matched", rid) == [(0,)]


# -- 8. a token with a trailing newline ------------------------------------------------------

def test_8_a_token_given_with_a_trailing_newline_still_lets_clients_in(guarded, demo_rows):
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        r = c.post("/feedback", headers=AUTH, json={"outcomes": [{"request_id": "a" * 32, "index": 0, "outcome": 1}]})
        assert r.status_code == 200
    assert "VIGIL_API_TOKEN has leading or trailing whitespace" in guarded.log()
    assert TOKEN not in guarded.log()


def test_8_a_token_that_cannot_be_sent_refuses_to_start(tmp_path, demo_tags):
    with pytest.raises(RuntimeError) as e:
        with serve(tmp_path, {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_API_TOKEN": "two words"},
                   ready_timeout=60):
            pass
    assert "api_token" in str(e.value) and "two words" not in str(e.value)


# -- 9. the smaller ones -------------------------------------------------------------------------

def test_9_connections_that_send_no_request_head_are_closed(guarded):
    with raw_connection(guarded) as s:  # never sends a byte
        start = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - start < 5
    with raw_connection(guarded) as s:  # sends its head a byte at a time
        start = time.monotonic()
        with pytest.raises(OSError):
            for b in b"GET /readyz HTTP/1.1\r\nHost: x\r\n" * 4:
                s.sendall(bytes([b]))
                time.sleep(0.1)
            s.sendall(b"\r\n")
            assert s.recv(10) != b""  # not reached: closed mid-head
        assert time.monotonic() - start < 5
    with httpx.Client(base_url=guarded.url) as c:  # a kept-alive client that sends requests is fine
        for _ in range(3):
            assert c.get("/readyz").status_code == 200
            time.sleep(0.5)


def test_9_monitoring_views_and_spec_ranges_need_the_token_when_protected(guarded):
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        assert c.get("/monitoring/status").status_code == 401
        assert c.get("/monitoring/status", headers=AUTH).status_code == 200
        spec = c.get("/docs.json")
    assert spec.status_code == 200 and "reference range [" not in spec.text
    assert "outside the reference range" in spec.text


def test_9_silence_free_text_is_stored_clean(guarded):
    with httpx.Client(base_url=guarded.url, timeout=30, headers=AUTH) as c:
        r = c.post("/admin/silences", json={"rule": "*", "seconds": 60, "reason": "<img src=x onerror=alert(1)>\u202e\x00ok",
                                            "by": "ops\u200b<b>"})
        assert r.status_code == 201, r.text
        (silence,) = [s for s in c.get("/monitoring/alerts").json()["silences"] if s["id"] == r.json()["id"]]
        c.delete(f"/admin/silences/{silence['id']}")
    assert silence["reason"] == "img src=x onerror=alert(1)ok" and silence["created_by"] == "opsb"


def test_9_listing_views_are_bounded(guarded):
    with httpx.Client(base_url=guarded.url, timeout=30, headers=AUTH) as c:
        r = c.get("/monitoring/drift?limit=1000")
    assert r.status_code == 200 and "truncated" in r.json() and len(r.content) <= 1 << 20


def test_9_store_status_reports_failing_writes(guarded):
    """Reported: /monitoring/status said store 'ok' while writes failed. Another process
    holds the SQLite write lock: reads work, every write times out."""
    holder = sqlite3.connect(guarded.db, timeout=5, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=guarded.url, timeout=30, headers=AUTH) as c:
            while True:
                store = c.get("/monitoring/status").json()["windows"]["store"]
                if store.startswith("failing writes"):
                    break
                assert time.monotonic() < deadline, store
                time.sleep(0.5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in store


# -- issue 18 item 7: typos and every error ------------------------------------------------

def test_feedback_typos_are_reported_not_kept(guarded, demo_rows):
    with httpx.Client(base_url=guarded.url, timeout=30, headers=AUTH) as c:
        rid = c.post("/predict", json={"instances": rows(demo_rows, 3)}).json()["request_id"]
        typo = rid[:-1] + ("0" if rid[-1] != "0" else "1")
        r = c.post("/feedback", json={"outcomes": [  # straight away: the log may lag, the id's rows are known
            {"request_id": rid, "index": 0, "outcome": 1}, {"request_id": rid, "index": 3, "outcome": 1},
            {"request_id": typo, "index": 0, "outcome": 1}]})
        body = r.json()
        assert r.status_code == 200 and (body["accepted"], body["unknown"]) == (1, 2), body
        assert {e["item"] for e in body["errors"]} == {1, 2}
        messages = " ".join(e["message"] for e in body["errors"])
        assert "beyond the 3 row(s)" in messages and "never issued" in messages
        # every problem of a batch, not the first of each item or of the batch
        bad = c.post("/feedback", json={"outcomes": [{"request_id": rid, "outcome": "x", "observed_at": "soon"},
                                                     {"instance_id": 5, "index": 1, "outcome": 1}]})
        assert bad.status_code == 422 and bad.json()["error_count"] == 4, bad.text
        row = {k: v for k, v in demo_rows[0].items() if k != "mean_radius"}
        p = c.post("/predict", json={"instances": [row, {**demo_rows[1], "mean_texture": "x"}]})
        assert p.status_code == 422 and p.json()["error_count"] == 2, p.text
    assert query(guarded.db, "SELECT count(*) FROM vigil_outcomes WHERE request_id = ?", typo) == [(0,)]


# -- 10. the token-protected server under Schemathesis (issue 19) ------------------------------

def guarded_operations(server) -> tuple[list, list]:
    """The spec's operations of the guarded server, split into (protected, open): with a
    token and protected monitoring, ``/feedback``, ``/admin`` and ``/monitoring`` take it."""
    import schemathesis

    from service.middleware import endpoint_of

    schema = schemathesis.openapi.from_url(server.url + "/docs.json")
    ops = [op.ok() for op in schema.get_all_operations()]
    protected = [op for op in ops if endpoint_of(op.path) in ("feedback", "admin", "monitoring")]
    return schema, protected, [op for op in ops if op not in protected]


def coverage_cases(schema, op):
    """Schemathesis's deterministic boundary cases of ``op`` (valid and invalid)."""
    import schemathesis

    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    return schema.iter_coverage_cases(op, generation_modes=modes,
                                      generation_config=schema.config.generation_for(operation=op))


def test_10_without_the_token_every_protected_operation_refuses_every_boundary_case(guarded):
    import requests

    schema, protected, _ = guarded_operations(guarded)
    assert {"POST /feedback", "POST /admin/silences", "GET /monitoring/drift"} <= {op.label for op in protected}
    wrong: list[str] = []
    with requests.Session() as session:
        for op in protected:
            for case in coverage_cases(schema, op):
                r = case.call(base_url=guarded.url, session=session, timeout=30)
                if r.status_code not in (401, 403):  # never served, never a 5xx
                    wrong.append(f"{case.method} {r.request.path_url}: {r.status_code} {r.text[:200]}")
    assert wrong == [], "\n".join(wrong[:20])


def test_10_with_the_token_no_boundary_case_of_any_operation_is_a_5xx(guarded):
    import requests

    schema, protected, open_ops = guarded_operations(guarded)
    statuses: dict[int, int] = {}
    failures: list[str] = []
    with requests.Session() as session:
        for op in protected + open_ops:
            for case in coverage_cases(schema, op):
                r = case.call(base_url=guarded.url, session=session, headers=AUTH, timeout=30)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                # the token is accepted everywhere (a negative case may send its own wrong one)
                sent_token = r.request.headers.get("Authorization") == AUTH["Authorization"]
                if r.status_code >= 500 or (r.status_code == 401 and sent_token):
                    failures.append(f"{case.method} {r.request.path_url}: {r.status_code} {r.text[:200]}")
    print("statuses:", dict(sorted(statuses.items())))
    assert failures == [], "\n".join(failures[:20])
    assert statuses.get(200, 0) + statuses.get(201, 0) > 0     # the token let requests through
