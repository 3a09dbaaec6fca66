"""Store trouble: the Postgres connection is lost mid-run (a TCP proxy the test cuts; the
shared server on 5432 keeps running). Load: predictions and feedback before, during and
after. /predict keeps answering, /feedback answers 503 (never a 2xx it cannot keep), the
monitor buffers, and everything resumes without a restart. Lost: nothing acknowledged
(the outcomes are read back from the database afterwards)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.backends import PG
from tests.support.proxy import CuttableProxy
from tests.support.server import serve

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not PG, reason="VIGIL_TEST_POSTGRES_URL not set (.ci/run sets it for the local Postgres)")
def test_postgres_connection_lost_mid_run(tmp_path, demo_tags, demo_rows):
    from sqlalchemy.engine import make_url

    url = make_url(PG)
    proxy = CuttableProxy(url.port or 5432, url.host or "127.0.0.1")
    model_env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_STORE_TIMEOUT": "2",
                 "VIGIL_STORE_URL": url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)}
    with serve(tmp_path, model_env) as server, server.client(timeout=30) as c:
        def predict(n=5):
            for _ in range(n):
                assert c.post("/predict", json={"instances": demo_rows[:2]}).status_code == 200

        sent: dict[str, int] = {}  # request id -> the status /feedback answered

        def feedback():
            rid = uuid.uuid4().hex
            r = c.post("/feedback", json={"outcomes": [{"request_id": rid, "index": 0, "outcome": 1}],
                                          "allow_early": True})
            sent[rid] = r.status_code
            return r

        predict()
        assert feedback().status_code == 200
        proxy.cut()
        t = time.perf_counter()
        predict(10)  # 20 rows while the store is gone
        assert time.perf_counter() - t < 10
        r = feedback()
        assert r.status_code == 503 and "nothing was stored" in r.json()["error"]
        for view in ("/monitoring/alerts", "/monitoring/drift"):  # store-backed views: 503, never a 500
            r = c.get(view)
            assert r.status_code == 503 and r.headers["retry-after"] == "5" and "unavailable" in r.json()["error"]
        assert c.get("/monitoring/status").json()["alerts"]["store"].startswith("unavailable")
        deadline = time.monotonic() + 20
        while c.get("/monitoring/status").json()["windows"]["store_errors"] == 0 and time.monotonic() < deadline:
            predict(1)
            time.sleep(0.3)
        st = c.get("/monitoring/status").json()["windows"]
        assert st["store_errors"] > 0 and st["pending_rows"] > 0  # buffered, within its bound
        proxy.restore()
        assert feedback().status_code == 200  # the store is back: acknowledged again
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = c.get("/monitoring/status").json()["windows"]
            if st["pending_rows"] == 0 and st["store_error"] is None:
                break
            time.sleep(0.5)
        assert st["pending_rows"] == 0 and st["store_error"] is None and st["buffer_dropped_rows"] == 0
        counted = st["rows_counted"]
        enqueued = c.get("/monitoring/status").json()["monitor_queue"]["enqueued_rows"]
        assert counted == enqueued  # every row served during the outage reached the store afterwards
    proxy.cut()
    # read back: every acknowledged outcome is stored, the refused one is not
    assert sorted(sent.values()) == [200, 200, 503]
    assert stored_outcomes(PG, list(sent)) == {rid for rid, status in sent.items() if status == 200}


def stored_outcomes(url: str, request_ids: list[str]) -> set[str]:
    from sqlalchemy import create_engine, select

    from monitoring.store.tables import outcomes

    engine = create_engine(url)  # the test's own connection, straight to the server
    try:
        with engine.connect() as c:
            query = select(outcomes.c.request_id).where(outcomes.c.request_id.in_(request_ids))
            return {r[0] for r in c.execute(query)}
    finally:
        engine.dispose()
