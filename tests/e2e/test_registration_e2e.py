"""End-to-end, one cheap server (issue 18, items 4 and 9): a model over integer, boolean,
date-string and id columns with a float 0.0/1.0 target, registered through the CLI and
served: live rows with ids and dates the reference never had are served, predictions come
back as the integer classes, feedback with the number 1 is accepted, and the window's drift
report tests only the measured features (the id and date columns are exempt)."""

from __future__ import annotations

import time

import joblib
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.models.test_registration_report import mixed_frame, mixed_model
from tests.support.server import serve

pytestmark = pytest.mark.e2e


def test_id_and_date_columns_serve_exempt_from_drift_and_classes_are_integers(tmp_path, bentoml_home):
    train, valid = mixed_frame(400, seed=0), mixed_frame(150, seed=1)
    train.to_csv(tmp_path / "train.csv", index=False)
    valid.to_parquet(tmp_path / "valid.parquet")
    joblib.dump(mixed_model(train), tmp_path / "model.joblib")
    r = CliRunner().invoke(app, ["register", str(tmp_path / "model.joblib"), "--reference", str(tmp_path / "train.csv"),
                                 "--validation", str(tmp_path / "valid.parquet"), "--target", "label",
                                 "--name", "mixed-served"])
    assert r.exit_code == 0, r.output
    tag = r.stdout.strip().splitlines()[-1]
    live = mixed_frame(60, seed=2)  # ids and dates no reference row has
    rows = live.drop(columns=["label"]).to_dict("records")
    env = {"VIGIL_MODEL": tag, "VIGIL_WINDOW_ROWS": "30", "VIGIL_WINDOW_SECONDS": "3600"}
    with serve(tmp_path, env) as server, server.client() as c:
        first = c.post("/predict", json={"instances": rows[:30]})
        assert first.status_code == 200, first.text
        assert c.post("/predict", json={"instances": rows[30:]}).status_code == 200
        body = first.json()
        assert body["predictions"] and all(type(p) is int and p in (0, 1) for p in body["predictions"])
        feedback = c.post("/feedback", json={"outcomes": [
            {"request_id": body["request_id"], "index": 0, "outcome": 1},  # the class 1.0 of the float target
            {"request_id": body["request_id"], "index": 1, "outcome": 0.0}]})
        assert feedback.status_code == 200 and feedback.json()["accepted"] == 2, feedback.text
        deadline = time.monotonic() + 30
        while not (windows := c.get("/monitoring/drift").json()["windows"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = server.log()
    assert windows, "\n".join(ln for ln in log.splitlines() if "path=/monitoring" not in ln)[-5000:]
    report = windows[-1]
    assert report["window_id"] == 0 and not report["too_small"]
    assert {f["feature"] for f in report["features"]} == {"age", "member", "amount"}
    quality = {q["feature"]: q for q in report["quality"]}
    assert quality["signup"]["unseen_rate"] is None and quality["ref"]["unseen_rate"] is None
    assert quality["customer_id"]["out_of_range_rate"] is None and quality["member"]["unseen_rate"] == 0.0
