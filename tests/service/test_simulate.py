"""vigil simulate without a server: the scenarios as functions of progress, the bounds of a
plan, and what the simulator sends (to one base URL only) through a mock transport."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pytest

from service.scenarios import SCENARIOS, Knobs, moment
from service.simulate import Plan, Sample, Simulator

FEATURES = ["a", "b", "c", "color"]


def sample(n: int = 200) -> Sample:
    rng = np.random.default_rng(0)
    rows = [{"a": float(rng.normal()), "b": float(rng.normal(10, 2)), "c": float(rng.normal()),
             "color": str(rng.choice(["red", "red", "blue", "green"]))} for _ in range(n)]
    return Sample(rows, [int(r["a"] > 0) for r in rows], "classification", [0, 1], ["a", "b", "c"], ["color"])


class FakeServer:
    """Answers /predict (422 for a non-number, 413 over 50 rows) and /feedback like Vigil."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.predicted: dict[str, list[dict]] = {}
        self.outcomes: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        if request.url.path == "/predict":
            rows = body["instances"]
            if len(rows) > 50:
                return httpx.Response(413, json={"error": "too many rows"})
            if any(not isinstance(r["a"], (int, float)) for r in rows):
                return httpx.Response(422, json={"error": "wrong type"})
            rid = uuid.uuid4().hex
            self.predicted[rid] = rows
            return httpx.Response(200, json={"request_id": rid, "predictions": [0] * len(rows)},
                                  headers={"traceparent": f"00-{uuid.uuid4().hex}-{'1' * 16}-01"})
        self.outcomes += body["outcomes"]
        return httpx.Response(200, json={"accepted": len(body["outcomes"]), "duplicate": 0, "pending": 0})


def run(plan: Plan, server: FakeServer, records=None):
    def handler(request):
        if request.url.path == "/docs.json":
            return httpx.Response(200, json={"paths": {"/predict": {"post": {"requestBody": {"content": {
                "application/json": {"schema": {"properties": {"instances": {"maxItems": 50}}}}}}}}}})
        return server(request)

    with httpx.Client(base_url=plan.url, transport=httpx.MockTransport(handler)) as client:
        sim = Simulator(plan, client, sample(), record=records.append if records is not None else None)
        return sim, sim.run()


def test_each_scenario_moves_what_it_says_and_nothing_else():
    k = Knobs(shift=3.0, flip=0.3, change_at=0.4)
    assert {moment(s, 0.0, k).shift for s in SCENARIOS} == {0.0} and not any(moment(s, 0.0, k).flip for s in SCENARIOS)
    assert moment("sudden-drift", 0.39, k).shift == 0 and moment("sudden-drift", 0.4, k).shift == 3.0
    assert moment("sudden-drift", 0.9, k).flip == 0.3
    g = [moment("gradual-drift", p, k).shift for p in np.linspace(0, 1, 11)]
    assert g == sorted(g) and g[-1] == 3.0
    decay = [moment("label-decay", p, k) for p in np.linspace(0, 1, 11)]
    assert all(m.shift == 0 for m in decay) and decay[-1].flip == 0.3 and decay[5].flip < 0.3
    assert [moment("outage", p, k).outage for p in (0.2, 0.5, 0.8)] == [False, True, False]
    assert moment("steady", 0.7, k) == moment("steady", 0.1, k)
    with pytest.raises(ValueError, match="scenario must be one of"):
        moment("chaos", 0.5)


@pytest.mark.parametrize("kw, needle", [
    ({"url": "ftp://x"}, "url must start"), ({"scenario": "chaos"}, "scenario must be one of"),
    ({"duration": 7200}, "duration"), ({"max_requests": 0}, "requests"), ({"rate": 1000}, "rate"),
    ({"batch": 5000}, "batch"), ({"label_share": 2}, "label share"), ({"feedback_delay": -1}, "feedback delay"),
])
def test_a_plan_out_of_bounds_is_refused(kw, needle):
    with pytest.raises(ValueError, match=needle):
        Plan(**{"url": "http://127.0.0.1:1", "scenario": "steady", **kw})


def test_sudden_drift_shifts_only_the_drifted_features_and_posts_changed_outcomes_later():
    server, records = FakeServer(), []
    plan = Plan(url="http://127.0.0.1:9", scenario="sudden-drift", duration=30, max_requests=40, rate=500, batch=25,
                feedback_delay=0.05, drifted=("a", "color"), knobs=Knobs(shift=5.0, flip=0.5, change_at=0.5), seed=1)
    sim, tally = run(plan, server, records)
    assert tally.requests == tally.ok == 40 and tally.rows == 1000
    assert {r.url.host for r in server.requests} == {"127.0.0.1"} and {r.url.port for r in server.requests} == {9}
    phases = [r["phase"] for r in records]
    assert phases == ["steady"] * 20 + ["drifted"] * 20
    s = sample()
    rows = list(server.predicted.values())
    before = np.array([r["a"] for batch in rows[:20] for r in batch])
    after = np.array([r["a"] for batch in rows[20:] for r in batch])
    assert abs(before.mean()) < 0.3 and after.mean() > 5 * s.sd["a"] - 0.5          # a moved by 5 sd
    b_after = np.array([r["b"] for batch in rows[20:] for r in batch])
    assert abs(b_after.mean() - 10) < 0.5                                             # b did not
    assert {r["color"] for batch in rows[20:] for r in batch} == {s.rare["color"]}    # the rare category took over
    assert len(server.outcomes) == tally.outcomes_posted == 1000                       # every row's outcome, later
    posted = {(o["request_id"], o["index"]): o["outcome"] for o in server.outcomes}
    batches = list(server.predicted.items())
    clean = [posted[(rid, i)] == int(r["a"] > 0) for rid, batch in batches[:20] for i, r in enumerate(batch)]
    assert all(clean)                                                                  # true outcomes before
    changed = [posted[(rid, i)] != int(r["a"] - 5 * s.sd["a"] > 0) for rid, batch in batches[20:]
               for i, r in enumerate(batch)]
    assert 0.4 < np.mean(changed) < 0.6                                                # half flipped after


def test_an_outage_sends_malformed_oversized_and_burst_requests_and_stays_bounded():
    server = FakeServer()
    plan = Plan(url="http://127.0.0.1:9", scenario="outage", duration=30, max_requests=30, rate=500, batch=5,
                feedback_delay=0, seed=2)
    _, tally = run(plan, server)
    assert tally.client_errors >= 2 and {422, 413} <= set(tally.statuses)
    assert tally.requests >= 30 and tally.requests < 30 + 10 * 10                     # bursts count toward the cap
    assert not any(r.url.path not in ("/predict", "/feedback", "/docs.json") for r in server.requests)


def test_the_run_stops_at_its_duration():
    plan = Plan(url="http://127.0.0.1:9", scenario="steady", duration=0.5, max_requests=100_000, rate=20, batch=1,
                feedback_delay=0)
    _, tally = run(plan, FakeServer())
    assert 5 <= tally.requests <= 12
