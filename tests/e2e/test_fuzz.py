"""Fuzzing: the OpenAPI spec at /docs.json driven by Schemathesis, plus hand-written hostile bodies.

The contract under test, for every endpoint and every input:

* never a 5xx;
* every 4xx is a JSON object with a non-empty string ``error``;
* the worker survives: after each hostile request the same worker process still answers
  ``/readyz`` and a valid ``/predict``.

Schemathesis reads the real per-feature schema the service publishes and generates valid
(positive) and schema-violating (negative) requests for every operation in it. Hypothesis
runs derandomized with no example database, so a run is reproducible.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from tests.support.server import serve

pytestmark = pytest.mark.e2e

DEMO_ID_FIELD = "transaction_id"
DEMO_MAX_ROWS = 20  # keeps generated batches (and maxItems + 1 boundary cases) small
SMALL_LIMIT = 65536
DEFAULT_LIMIT = 4 * 1024 * 1024
CAT_ROW = {"color": "red", "size": 11.0, "weight": None}
ADMIN_TOKEN = "fuzz-admin-token"
JSON = {"content-type": "application/json"}
DEPTH = 100_000
#: Examples per operation and mode; raise it for a longer local hunt.
MAX_EXAMPLES = int(os.environ.get("VIGIL_TEST_FUZZ_EXAMPLES", "100"))

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same examples on every run
    database=None,  # no example database: nothing carried over between runs
    deadline=None,  # a server round trip is not a Hypothesis deadline matter
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


# -- servers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory, demo_tags, test_tags):
    """Three servers, started in parallel: demo classifier, strict categorical pipeline, and
    the categorical pipeline again with a small body limit and an API token (admin endpoints)."""
    configs = {
        "demo": {"VIGIL_MODEL": demo_tags["classifier"], "VIGIL_INSTANCE_ID_FIELD": DEMO_ID_FIELD,
                 "VIGIL_MAX_BATCH_ROWS": str(DEMO_MAX_ROWS)},
        "cat": {"VIGIL_MODEL": test_tags["cat_strict"]},
        "small": {"VIGIL_MODEL": test_tags["cat_strict"], "VIGIL_MAX_BODY_BYTES": str(SMALL_LIMIT),
                  "VIGIL_API_TOKEN": ADMIN_TOKEN},
    }
    with ExitStack() as stack:
        started, errors = {}, []

        def start(name, env):
            try:
                started[name] = stack.enter_context(serve(tmp_path_factory.mktemp(f"fuzz-{name}"), env))
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
def demo_server(servers):
    return servers["demo"]


@pytest.fixture(scope="module")
def cat_server(servers):
    return servers["cat"]


@pytest.fixture(scope="module")
def small_server(servers):
    return servers["small"]


@pytest.fixture(scope="module")
def demo_schema(demo_server):
    return schemathesis.openapi.from_url(demo_server.url + "/docs.json")


@pytest.fixture(scope="module")
def cat_schema(cat_server):
    return schemathesis.openapi.from_url(cat_server.url + "/docs.json")


# -- the contract ------------------------------------------------------------------------

def contract_violation(status: int, content_type: str, body: bytes) -> str | None:
    """Why a response breaks the contract, or None."""
    if status >= 500:
        return f"server error {status}: {body[:500]!r}"
    if 400 <= status < 500:
        if "json" not in content_type:
            return f"{status} without a JSON body (content-type {content_type!r}): {body[:200]!r}"
        try:
            payload = json.loads(body)
        except ValueError:
            return f"{status} body is not JSON: {body[:200]!r}"
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), str) or not payload["error"].strip():
            return f"{status} body has no non-empty string 'error': {body[:300]!r}"
    return None


def error_body_is_json(ctx, response, case):
    """Schemathesis check: a 4xx carries JSON with a non-empty 'error' message."""
    content_type = ",".join(v for k, vs in response.headers.items() if k.lower() == "content-type" for v in vs)
    problem = contract_violation(response.status_code, content_type, response.content)
    if problem is not None and response.status_code < 500:
        raise AssertionError(problem)


def check(r: httpx.Response) -> httpx.Response:
    problem = contract_violation(r.status_code, r.headers.get("content-type", ""), r.content)
    assert problem is None, f"{r.request.method} {r.request.url.path}: {problem}"
    return r


#: One kept-alive client per server (by URL) for the liveness probes.
PROBES: dict[str, httpx.Client] = {}


def worker_pid(server) -> int:
    r = PROBES[server.url].get("/monitoring/status")
    assert r.status_code == 200, r.text
    return r.json()["worker_pid"]


def _peak_rss(server) -> float:
    """The worker's peak resident memory so far (Linux's VmHWM; current RSS elsewhere)."""
    pid = worker_pid(server)
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(psutil.Process(pid).memory_info().rss)


#: A valid batch for each server (by URL), for the liveness probe.
VALID_ROWS: dict[str, list[dict]] = {}


def assert_alive(server, pid: int | None = None) -> None:
    """The server answers /readyz and a valid /predict, from the same worker as before."""
    c = PROBES[server.url]
    assert c.get("/readyz").status_code == 200
    r = c.post("/predict", json={"instances": VALID_ROWS[server.url]})
    assert r.status_code == 200, r.text
    assert server.proc.poll() is None, "server process exited"
    if pid is not None:
        assert worker_pid(server) == pid, "the worker was replaced: it crashed or was killed"


@pytest.fixture(scope="module")
def alive(servers, demo_rows):
    """Per server: the worker's pid at the start (and the valid rows and client for probes)."""
    VALID_ROWS[servers["demo"].url] = [{**demo_rows[0], DEMO_ID_FIELD: "probe"}, demo_rows[1]]
    for name in ("cat", "small"):
        VALID_ROWS[servers[name].url] = [CAT_ROW, {**CAT_ROW, "color": "blue", "weight": 4.2}]
    with ExitStack() as stack:
        for server in servers.values():
            PROBES[server.url] = stack.enter_context(server.client(timeout=30))
        pids = {}
        for name, server in servers.items():
            assert_alive(server)
            pids[name] = worker_pid(server)
        yield pids
        # after every test of the module, whatever order they ran in (a teardown, not a test that
        # must come last): the servers survived everything
        try:
            for name, server in servers.items():
                survived_everything(name, server, pids[name])
        finally:
            PROBES.clear()


def survived_everything(name: str, server, pid: int) -> None:
    """The first worker is still the one serving, its monitor consumer never failed on what
    the requests left it, and the server's own request counter saw no 5xx on any endpoint."""
    assert_alive(server, pid)
    c = PROBES[server.url]
    status = c.get("/monitoring/status").json()
    assert status["monitor_queue"]["consumer_errors"] == 0, status["monitor_queue"]
    assert status["monitor_queue"]["running"], status["monitor_queue"]
    five_xx = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in c.get("/metrics").text.splitlines()
               if line.startswith("vigil_requests_total{") and 'outcome="server_error"' in line}
    assert sum(five_xx.values()) == 0, f"{name}: 5xx responses counted: {five_xx}"


# -- 1. schemathesis over /docs.json -----------------------------------------------------

#: Paths of the mounted apps (described by service/openapi.py): fuzzed apart, coverage cases only.
MOUNTED = ("/monitoring", "/admin", "/dashboard")


def _fuzz(server, schema, mounted: bool = False) -> None:
    """Every operation of the spec that BentoML serves: Schemathesis's coverage cases
    (boundary values, wrong types, unexpected methods; deterministic), then
    Hypothesis-generated valid and invalid requests (derandomized). With ``mounted``, the
    mounted apps' operations instead, coverage cases only (read-only views and token-guarded
    actions: the boundaries are what matters, and the suite's time is bounded)."""
    ops = [op.ok() for op in schema.get_all_operations()]
    ops = [op for op in ops if op.path.startswith(MOUNTED) == mounted]
    labels = sorted(op.label for op in ops)
    expected = {"GET /monitoring/drift", "POST /admin/silences"} if mounted else {"POST /predict", "GET /readyz"}
    assert expected <= set(labels), labels
    headers = {"X-Request-ID": "fuzz"}
    checks = [not_a_server_error, error_body_is_json]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    failures: dict[tuple, list] = {}  # distinct problem -> [a reproduction, where it was seen]
    positive_rejections: dict[str, int] = {}  # schema-valid requests the service still refused
    session = requests.Session()  # keep-alive: the server's answers, not connection setup, dominate

    def send(op, case, where: str, statuses: dict[int, int]) -> None:
        response = case.call(base_url=server.url, session=session, headers=headers, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if where == "positive" and case.method == "POST" and 400 <= response.status_code < 500:
            why = _summary(response.content)
            positive_rejections[why] = positive_rejections.get(why, 0) + 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (AssertionError, FailureGroup) as exc:
            sent_type = (response.request.headers.get("content-type") or "").split(";")[0]
            key = (response.status_code, sent_type, _summary(response.content))
            text = f"{op.label} [{where}]: {str(exc)[:3000]}"
            entry = failures.setdefault(key, [text, set()])
            if where != "coverage":
                entry[0] = text  # Hypothesis replays its shrunk example last
            entry[1].add(f"{case.method} {op.path} ({where})")
            raise

    for op in ops:
        statuses: dict[int, int] = {}
        for case in schema.iter_coverage_cases(op, generation_modes=modes,
                                              generation_config=schema.config.generation_for(operation=op)):
            try:
                send(op, case, "coverage", statuses)
            except (AssertionError, FailureGroup):
                pass  # recorded by send(); every coverage case runs
        print(f"{op.label} [coverage] statuses: {dict(sorted(statuses.items()))}")
        for mode in modes if not mounted else ():
            statuses = {}
            try:
                _hypothesis_test(op, mode, send, statuses)()
            except Unsatisfiable:  # nothing to violate: an operation without parameters or body
                assert mode == schemathesis.GenerationMode.NEGATIVE and not statuses
            except (AssertionError, FailureGroup):
                pass  # recorded by send() (the shrunk example comes last); every operation runs
            print(f"{op.label} [{mode.value}] statuses: {dict(sorted(statuses.items()))}")
    if positive_rejections:
        print("schema-valid bodies refused:", json.dumps(positive_rejections, indent=1, ensure_ascii=False))
    session.close()
    report = [f"{text}\n    seen for: {', '.join(sorted(seen))}" for text, seen in failures.values()]
    assert not failures, f"{len(failures)} distinct problem(s):\n\n" + "\n\n".join(report)


def _hypothesis_test(op, mode, send, statuses: dict[int, int]):
    """A derandomized Hypothesis test sending ``op``'s generated cases of ``mode``."""

    @FUZZ_SETTINGS
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        send(op, case, mode.value, statuses)

    return run


def _summary(content: bytes) -> str:
    """A response's error message with ids and numbers blanked, to group like failures."""
    try:
        text = str(json.loads(content).get("error"))
    except (ValueError, AttributeError):
        text = content.decode(errors="replace")
    return re.sub(r"[0-9a-f]{32}|\d+", "#", text)[:120]


def test_schemathesis_demo_classifier(demo_server, demo_schema, alive):
    _fuzz(demo_server, demo_schema)
    assert_alive(demo_server, alive["demo"])


def test_schemathesis_boundaries_of_the_monitoring_and_admin_endpoints(demo_server, demo_schema, alive):
    _fuzz(demo_server, demo_schema, mounted=True)
    assert_alive(demo_server, alive["demo"])


def test_schemathesis_categorical_pipeline(cat_server, cat_schema, alive):
    spec = httpx.get(cat_server.url + "/docs.json").json()
    item = spec["components"]["schemas"]["predict__Input"]["properties"]["instances"]["items"]
    assert item["properties"]["color"]["enum"] == ["blue", "green", "red"]
    _fuzz(cat_server, cat_schema)
    assert_alive(cat_server, alive["cat"])


# -- 2. hand-written hostile requests ---------------------------------------------------

def _demo_raw(demo_rows, feature: str, literal: str) -> bytes:
    """A one-row demo batch as JSON text, with ``feature`` set to the raw ``literal``."""
    row = {**demo_rows[0], feature: "@@VALUE@@"}
    return json.dumps({"instances": [row]}).replace('"@@VALUE@@"', literal).encode()


@pytest.mark.parametrize("literal, statuses", [
    ("1e39", {200, 422}),  # float64 model: fine; never a 5xx
    ("-1e39", {200, 422}),
    ("-0.0", {200}),
    ("0", {200}),
    ("5e-324", {200}),
    ("1e-400", {200}),  # underflows to 0.0
    ("1.7976931348623157e308", {200, 422}),
    ("1e400", {400, 422}),  # overflows to inf in the parser
    ("-1e400", {400, 422}),
    (str(10**400), {400, 422}),
    (str(-10**400), {400, 422}),
    ("1" * 5000, {400, 422}),  # beyond the parser's (and Python's int-from-str) digit limit
    ("123456789012345678901234567890", {200, 422}),
    ("NaN", {400, 422}),
    ("Infinity", {400, 422}),
    ("-Infinity", {400, 422}),
    ("nan", {400}),
    ("true", {422}),
    ('"1.5"', {422}),
    ('""', {422}),
    ("[]", {422}),
    ("[1.5]", {422}),
    ("{}", {422}),
    ('{"a": 1}', {422}),
    ("null", {422}),
    ('"\\u0000"', {422}),
    ('"\\ud800"', {400, 422}),  # lone surrogate
    ('"r\\u00ebd \\ud83d\\udfe5"', {422}),
], ids=lambda v: None if isinstance(v, set) else v[:24])
def test_hostile_numeric_values(demo_server, alive, demo_rows, literal, statuses):
    with demo_server.client() as c:
        r = check(c.post("/predict", content=_demo_raw(demo_rows, "mean_radius", literal), headers=JSON))
    assert r.status_code in statuses, r.text
    if r.status_code == 422:
        assert "mean_radius" in r.json()["error"]
    assert_alive(demo_server, alive["demo"])


def test_1e39_through_json_encoder_and_minus_zero_prediction(demo_server, alive, demo_rows):
    with demo_server.client() as c:
        r = check(c.post("/predict", json={"instances": [{**demo_rows[0], "mean_radius": 1e39}]}))
        assert r.status_code in (200, 422), r.text
        zero = check(c.post("/predict", json={"instances": [{**demo_rows[0], "mean_radius": -0.0}]}))
        plus = check(c.post("/predict", json={"instances": [{**demo_rows[0], "mean_radius": 0.0}]}))
    assert zero.status_code == plus.status_code == 200
    assert zero.json()["probabilities"] == plus.json()["probabilities"]


@pytest.mark.parametrize("value, statuses", [
    ("red", {200}),
    ("rëd", {422}),
    ("🟥", {422}),
    ("\u0000", {422}),
    ("red\u0000", {422}),
    ("RED", {422}),
    (" red", {422}),
    ("\u202ered", {422}),  # right-to-left override
    ("r\u0435d", {422}),  # Cyrillic e: looks like "red"
    ("", {422}),
    ("x" * 10_000, {422}),
    (1, {422}),
    (True, {422}),
    (1.5, {422}),
    (["red"], {422}),
    ({"red": 1}, {422}),
], ids=lambda v: None if isinstance(v, set) else ascii(v)[:24])
def test_unicode_and_odd_category_values(cat_server, alive, value, statuses):
    with cat_server.client() as c:
        r = check(c.post("/predict", json={"instances": [{**CAT_ROW, "color": value}]}))
    assert r.status_code in statuses, r.text
    if r.status_code == 422:
        assert "row 0, feature 'color'" in r.json()["error"]
        assert len(r.content) < 4096, "the error must not echo a long value back"
    assert_alive(cat_server, alive["cat"])


_REST = '"size": 1.0, "weight": null'  # the rest of a valid categorical row, as JSON text


@pytest.mark.parametrize("body, last_wins", [
    ('{"instances": [{"color": "purple", ' + _REST + ', "color": "red"}]}', 200),
    ('{"instances": [{"color": "red", ' + _REST + ', "color": "blue\\u0000"}]}', 422),
    ('{"instances": [{"size": 1.0, "size": "big", "weight": null, "color": "red"}]}', 422),
    ('{"instances": 5, "instances": [{"color": "red", ' + _REST + '}]}', 200),
    ('{"instances": [{"color": "red", ' + _REST + '}], "instances": null}', 422),
    ('{"instances": [{"color": "red", ' + _REST + ', "zz": 1, "zz": 2}]}', 422),
], ids=["feature, last valid", "feature, last unseen", "feature, last wrong type", "instances, last valid",
        "instances, last null", "unknown key twice"])
def test_duplicate_json_keys(cat_server, alive, body, last_wins):
    """The parser keeps the last of duplicate keys, which is then validated as usual (a
    server that refused duplicate keys outright with a 400 would be fine too)."""
    with cat_server.client() as c:
        r = check(c.post("/predict", content=body.encode(), headers=JSON))
    assert r.status_code in (last_wins, 400), r.text
    assert_alive(cat_server, alive["cat"])


@pytest.mark.parametrize("instances", [
    {}, {"color": "red", "size": 1.0, "weight": None}, "red", "", 0, 1.5, -1, True, None,
    [None], [[]], [["red", 1.0, None]], ["red"], [1], [{}], [CAT_ROW, None], [CAT_ROW] * 1001,
    [{**CAT_ROW, "": 1}], [{**CAT_ROW, "\u0000": 1}], [{**CAT_ROW, "🟥" * 1000: 1}],
    [{k: v for k, v in CAT_ROW.items() if k != "color"}],
], ids=lambda v: repr(v)[:40])
def test_instances_of_every_shape(cat_server, alive, instances):
    with cat_server.client() as c:
        r = check(c.post("/predict", json={"instances": instances}))
    assert r.status_code in (400, 413, 422), r.text
    assert len(r.content) < 16384
    assert_alive(cat_server, alive["cat"])


@pytest.mark.parametrize("body, headers", [
    (b"", JSON),
    (b"not json", JSON),
    (b"{", JSON),
    (b'{"instances": [', JSON),
    (b"null", JSON),
    (b"[]", JSON),
    (b'"instances"', JSON),
    (b"42", JSON),
    (b'{"instances": [{"color": "red", "size": 1.0, "weight": null}]} trailing', JSON),
    (b'\xef\xbb\xbf{"instances": []}', JSON),  # BOM
    (b'{"instances": [{"color": "\xff\xfe", "size": 1.0, "weight": null}]}', JSON),  # not UTF-8
    (b'{"instances": [{"color": "red", "size": 1.0, "weight": null}]}', {"content-type": "text/plain"}),
    (b'{"instances": [{"color": "red", "size": 1.0, "weight": null}]}', {"content-type": "application/xml"}),
    (b"<instances/>", {"content-type": "application/xml"}),
    (b"instances=red", {"content-type": "application/x-www-form-urlencoded"}),
    (b"--b\r\nContent-Disposition: form-data; name=\"instances\"\r\n\r\nred\r\n--b--\r\n",
     {"content-type": "multipart/form-data; boundary=b"}),
    (b"\x00\x01\x02\x03", {"content-type": "application/octet-stream"}),
    (b'{"instances": []}', {"content-type": "application/json; charset=utf-16"}),
    (b'{"instances": [{"color": "red", "size": 1.0, "weight": null}]}', {"content-type": "multipart/form-data"}),
    (b'{"instances": []}', {"content-type": "multipart/form-data; boundary="}),
    (b"--b\r\n\r\n", {"content-type": "multipart/form-data; boundary=b"}),
    (b'{"instances": []}', {"content-type": "application/x-www-form-urlencoded"}),
    (b'{"instances": []}', {"content-type": "\u00e9/\u00e9".encode()}),
    (b'{"instances": []}', {"content-encoding": "gzip", **JSON}),
], ids=["empty", "not json", "open brace", "unclosed instances", "null", "array", "string", "number",
        "trailing garbage", "BOM", "not UTF-8", "text/plain", "xml type, json body", "xml", "form",
        "multipart", "octet-stream", "utf-16 charset", "multipart without boundary",
        "multipart with empty boundary", "multipart without parts", "form type, json body",
        "non-ascii content-type", "gzip claimed, not gzip"])
def test_malformed_bodies_and_content_types(cat_server, alive, body, headers):
    with cat_server.client() as c:
        r = check(c.post("/predict", content=body, headers=headers))
    assert r.status_code < 500
    assert_alive(cat_server, alive["cat"])


@pytest.mark.parametrize("header", ["", "a b", "x" * 257, "tab\there", "\x7f", "é" * 10],
                         ids=lambda v: ascii(v)[:24])
def test_odd_request_id_headers(cat_server, alive, header):
    with cat_server.client() as c:
        r = check(c.post("/predict", json={"instances": [CAT_ROW]},
                         headers={"X-Request-ID": header.encode("latin-1")}))
    assert r.status_code in (200, 422), r.text
    assert_alive(cat_server, alive["cat"])


@pytest.mark.parametrize("instance_id", [
    "t-1", 7, 10**400, -(10**30), "", "x" * 257, "🟥", None, 1.5, True, [1], ["t-1"], {"id": 1}, [],
], ids=lambda v: ascii(v)[:24])
def test_instance_id_field_values(demo_server, alive, demo_rows, instance_id):
    body = json.dumps({"instances": [{**demo_rows[0], DEMO_ID_FIELD: instance_id}]})
    with demo_server.client() as c:
        r = check(c.post("/predict", content=body.encode(), headers=JSON))
    assert r.status_code in (200, 422), r.text
    assert_alive(demo_server, alive["demo"])


def test_repeated_and_mixed_type_instance_ids(demo_server, alive, demo_rows):
    rows = [{**demo_rows[i], DEMO_ID_FIELD: v} for i, v in enumerate([1, 1.0, "1", [1], {"a": 1}])]
    with demo_server.client() as c:
        r = check(c.post("/predict", json={"instances": rows}))
    assert r.status_code == 422, r.text
    assert_alive(demo_server, alive["demo"])


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1e3", "limit=",
                                   "limit=" + "9" * 5000, "limit=%00", "limit=%F0%9F%9F%A5", "limit=1&limit=2"])
def test_drift_endpoint_query(cat_server, alive, query):
    with cat_server.client() as c:
        r = check(c.get("/monitoring/drift?" + query))
    assert r.status_code in (200, 422), r.text
    assert_alive(cat_server, alive["cat"])


@pytest.mark.parametrize("method, path", [
    ("GET", "/predict"), ("PUT", "/predict"), ("DELETE", "/predict"), ("POST", "/readyz"),
    ("POST", "/metrics"), ("POST", "/monitoring/status"), ("GET", "/no-such-endpoint"),
    ("GET", "/monitoring/no-such-endpoint"),
])
def test_wrong_method_or_path_gets_json_error(cat_server, alive, method, path):
    with cat_server.client() as c:
        r = c.request(method, path)
    assert 400 <= r.status_code < 500
    check(r)


# -- 3. deep, huge and oversized bodies --------------------------------------------------

@pytest.mark.parametrize("name, body", [
    ("nested arrays as instances", b'{"instances": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"),
    ("nested arrays at top level", b"[" * DEPTH + b"]" * DEPTH),
    ("nested objects in a feature", b'{"instances": [{"color": ' + b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH
     + b', "size": 1.0, "weight": null}]}'),
    ("unclosed nested arrays", b'{"instances": ' + b"[" * DEPTH),
    ("nested arrays in a row", b'{"instances": [' + b"[" * DEPTH + b"]" * DEPTH + b"]}"),
])
def test_deeply_nested_json(cat_server, alive, name, body):
    assert len(body) < DEFAULT_LIMIT
    peak_before = _peak_rss(cat_server)
    with cat_server.client() as c:
        for _ in range(3):
            r = check(c.post("/predict", content=body, headers=JSON))
            assert r.status_code in (400, 422), r.text
            assert len(r.content) < 16384
    assert _peak_rss(cat_server) < peak_before + 200e6
    assert_alive(cat_server, alive["cat"])


def test_huge_json_within_the_default_limit(cat_server, demo_server, alive, demo_rows):
    peak_before = {"cat": _peak_rss(cat_server), "demo": _peak_rss(demo_server)}
    three_mb = "x" * 3_000_000
    big_bodies = [
        ("cat", [
            {"instances": [{**CAT_ROW, "color": three_mb}]},  # a 3 MB category value
            {"instances": [{**CAT_ROW, "size": three_mb}]},  # a 3 MB string for a number
            {"instances": [{**CAT_ROW, three_mb: 1}]},  # a 3 MB key
            {"instances": [{**CAT_ROW, **{f"k{i}": i for i in range(200_000)}}]},  # 200k unknown keys
            {"instances": [CAT_ROW] * 60_000},  # far too many rows
            {"instances": [{**CAT_ROW, "weight": [0.5] * 400_000}]},  # a huge array for a number
        ]),
        ("demo", [
            {"instances": [{**demo_rows[0], DEMO_ID_FIELD: three_mb}]},  # a 3 MB instance id
            {"instances": [{**demo_rows[0], "mean_radius": three_mb}]},
        ]),
    ]
    for name, bodies in big_bodies:
        server = cat_server if name == "cat" else demo_server
        for body in bodies:
            content = json.dumps(body).encode()
            assert 1_000_000 < len(content) < DEFAULT_LIMIT
            with server.client() as c:
                r = check(c.post("/predict", content=content, headers=JSON))
            assert r.status_code in (413, 422), r.text[:500]
            assert len(r.content) < 16384, "the error must not echo the value back"
            assert_alive(server, alive[name])
    # parsing ~3.5 MB bodies never took more than a few hundred MB at its peak
    for name, server in (("cat", cat_server), ("demo", demo_server)):
        peak = _peak_rss(server)
        print(f"{name} worker peak RSS {peak_before[name] / 1e6:.0f} MB -> {peak / 1e6:.0f} MB")
        assert peak < peak_before[name] + 400e6


def test_body_over_the_default_limit_is_413(cat_server, alive):
    body = json.dumps({"instances": [{**CAT_ROW, "color": "x" * DEFAULT_LIMIT}]}).encode()
    with cat_server.client() as c:
        r = check(c.post("/predict", content=body, headers=JSON))
    assert r.status_code == 413 and str(DEFAULT_LIMIT) in r.json()["error"]
    assert_alive(cat_server, alive["cat"])


@pytest.mark.parametrize("name, body", [
    ("valid JSON", json.dumps({"instances": [{**CAT_ROW, "color": "x" * SMALL_LIMIT}]}).encode()),
    ("not JSON", b"{" * (SMALL_LIMIT + 1)),
    ("nested arrays", b"[" * DEPTH + b"]" * DEPTH),
    ("one byte over", b'{"instances": [' + b" " * (SMALL_LIMIT - 16) + b"]}"),
])
def test_body_over_a_small_limit_is_413_before_parsing(small_server, alive, name, body):
    assert len(body) > SMALL_LIMIT
    with small_server.client() as c:
        r = check(c.post("/predict", content=body, headers=JSON))
        assert r.status_code == 413, r.text
        assert str(SMALL_LIMIT) in r.json()["error"]

        def chunks():  # no Content-Length: read up to the limit, then refused
            for i in range(0, len(body), 8192):
                yield body[i:i + 8192]

        r = check(c.post("/predict", content=chunks(), headers=JSON))
        assert r.status_code == 413, r.text
    assert_alive(small_server, alive["small"])


def test_body_at_the_small_limit_is_parsed(small_server, alive):
    head, tail = b'{"instances": [', b"]}"
    body = head + b" " * (SMALL_LIMIT - len(head) - len(tail)) + tail
    assert len(body) == SMALL_LIMIT
    with small_server.client() as c:
        r = check(c.post("/predict", content=body, headers=JSON))
    assert r.status_code == 422 and "empty" in r.json()["error"]


def test_declared_huge_body_is_refused_without_reading_it(small_server, alive):
    """A 10 GB Content-Length gets 413 at once: the server does not wait for the body."""
    parts = urlsplit(small_server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 10000000000\r\n\r\n{\"instances\": [")
        start = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without a response: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk, f"connection closed mid-body: {data + body!r}"
            body += chunk
        elapsed = time.monotonic() - start
    status_line = head.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line + b" ", head
    assert b"10000000000" in json.loads(body)["error"].encode()
    assert elapsed < 5
    assert_alive(small_server, alive["small"])


ADMIN = [
    ("POST", "/admin/silences", b'{"rule": "*", "seconds": 1e39}'),
    ("POST", "/admin/silences", b'{"rule": "*", "seconds": -1}'),
    ("POST", "/admin/silences", b'{"rule": "*", "seconds": true}'),
    ("POST", "/admin/silences", rb'{"rule": "\u0000\ud83d", "seconds": 5}'),
    ("POST", "/admin/silences", b'{"rule": ["*"], "seconds": 5}'),
    ("POST", "/admin/silences", b'{"rule": "*", "seconds": 5, "instance": {"a": 1}}'),
    ("POST", "/admin/silences", b'{"rule": "*", "seconds": 5, "instance": "' + b"i" * 301 + b'"}'),
    ("POST", "/admin/silences", b'{"rule": "*", "seconds": 5, "reason": "' + b"x" * 100_000 + b'"}'),
    ("POST", "/admin/silences", b'[1, 2]'),
    ("POST", "/admin/silences", b'{"rule": "*", "rule": 5, "seconds": 5}'),
    ("POST", "/admin/silences", b'not json'),
    ("DELETE", "/admin/silences/abc", b""),
    ("DELETE", "/admin/silences/99999999999999999999999", b""),
    ("DELETE", "/admin/silences/-1", b""),
    ("POST", "/admin/alerts/ack", b'{"rule": "feature_drift", "instance": 12}'),
    ("POST", "/admin/alerts/ack", b'{"rule": "nope"}'),
    ("POST", "/admin/alerts/ack", b'{}'),
    ("POST", "/admin/rebaseline", b'{"window_id": 1e39}'),
    ("POST", "/admin/rebaseline", b'{"window_id": -0.0}'),
    ("POST", "/admin/rebaseline", b'{"window_id": 99999999999999999999999999}'),
    ("POST", "/admin/rebaseline", b'{"window_id": "0"}'),
    ("POST", "/admin/rebaseline", b'{"window_id": 0}'),
    ("GET", "/admin/rebaseline", b""),
]


@pytest.mark.parametrize("method, path, body", ADMIN, ids=[f"{m} {p} {b[:40]!r}" for m, p, b in ADMIN])
def test_admin_endpoints_refuse_hostile_input_with_4xx(small_server, alive, method, path, body):
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", **JSON}
    with small_server.client() as c:
        r = check(c.request(method, path, content=body, headers=auth))
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert check(c.request(method, path, content=body, headers=JSON)).status_code == 401  # no token
        view = check(c.get("/monitoring/alerts?limit=5"))
    assert view.status_code == 200 and view.json()["silences"] == []  # nothing hostile got stored
    assert_alive(small_server, alive["small"])
