"""Access control: a bearer token guards /feedback and /admin (and /predict when asked);
health and /metrics stay open; without a token the service warns that feedback is open and
the admin endpoints are off."""

from __future__ import annotations

import pytest

from tests.support.server import serve

pytestmark = pytest.mark.e2e
TOKEN = "s3cret-token-value"


def test_token_guards_feedback_and_optionally_predict(tmp_path, demo_tags, demo_rows):
    env = {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_API_TOKEN": TOKEN, "VIGIL_PROTECT_PREDICT": "true"}
    body = {"outcomes": [{"request_id": "f" * 32, "index": 0, "outcome": 1}]}
    with serve(tmp_path, env) as server, server.client() as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            r = c.post("/feedback", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
            assert c.post("/predict", json={"instances": demo_rows[:1]}, headers=headers).status_code == 401
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/feedback", json=body, headers=ok).status_code == 200
        assert c.post("/predict", json={"instances": demo_rows[:1]}, headers=ok).status_code == 200
        for path in ("/livez", "/readyz", "/metrics"):
            assert c.get(path).status_code == 200
        assert 'vigil_validation_errors_total{kind="unauthorized"} 8.0' in c.get("/metrics").text
    assert "VIGIL_API_TOKEN is not set" not in server.log()
    assert TOKEN not in server.log()


def test_without_token_feedback_is_open_with_a_warning(tmp_path, demo_tags, demo_rows):
    with serve(tmp_path, {"VIGIL_MODEL": demo_tags["classifier"]}) as server, server.client() as c:
        assert c.post("/predict", json={"instances": demo_rows[:1]}).status_code == 200
        # operator actions (silencing alerts, re-baselining) are never open: no token, no admin
        r = c.post("/admin/silences", json={"rule": "*", "seconds": 60})
        assert r.status_code == 403 and "VIGIL_API_TOKEN" in r.json()["error"]
        assert c.get("/monitoring/alerts").json()["silences"] == []
    assert "VIGIL_API_TOKEN is not set: /feedback is open to anyone" in server.log()
