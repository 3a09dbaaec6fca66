"""The commands that talk to a server or read the store, through their real HTTP client
against a stand-in server: readable one-line results with ISO times, the server's JSON
with ``--json``, tables not cut when piped, silences listed with their ids, durations
with units, the token stripped like the server strips it; and one ``error:`` line with
exit status 2 for every usage mistake."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from .conftest import vigil

ROOT = Path(__file__).resolve().parents[3]
UNTIL = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LONG_DERIVATION = "per-window false-alarm rate from a budget of 1 false alert per week " * 3

ALERTS = {
    "model": "fraud:abc", "alerts": [
        {"rule": "feature_drift", "instance": "a_rather_long_feature_name_for_the_table", "state": "firing",
         "severity": "warning", "value": 3.14159, "since": UNTIL - 600, "acknowledged_by": "alice"}],
    "rules": [{"name": "feature_drift", "condition": "drift.score outside band", "for_windows": 3,
               "resolve_windows": 2, "severity": "warning", "derivation": LONG_DERIVATION}],
    "silences": [{"id": 7, "rule": "latency_spike", "instance": None, "until": UNTIL, "created_at": UNTIL - 3600,
                  "reason": "planned migration", "created_by": "bob"}],
    "outbox": {"pending": 1, "delivered": 2, "failed": 0}, "transitions": [],
}


def _one_error_line(r) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("error: ") and "Traceback" not in r.output
    return lines[0]


def test_alerts_list_shows_silences_with_their_ids_and_is_not_cut_when_piped(server):
    server.answer("GET", "/monitoring/alerts", ALERTS)
    r = vigil("alerts", "list", "--url", server.url, "--rules")
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.stdout.splitlines() if "a_rather_long_feature_name_for_the_table" in ln)
    assert "2027-01-15T07:50:00Z" in row and "alice" in row and "3.142" in row
    silence = next(ln for ln in r.stdout.splitlines() if "latency_spike" in ln)
    assert re.search(r"\b7\b", silence) and "2027-01-15T08:00:00Z" in silence and "planned migration" in silence
    assert LONG_DERIVATION.strip() in r.stdout  # one line, however wide: a pipe is not an 80-column terminal
    assert "1 active silence(s)" in r.stderr


def test_alerts_list_json_is_the_servers_answer(server):
    server.answer("GET", "/monitoring/alerts", ALERTS)
    r = vigil("alerts", "list", "--url", server.url, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == ALERTS


def test_silence_takes_a_duration_with_units_and_prints_one_readable_line(server):
    server.answer("POST", "/admin/silences", {"id": 12, "rule": "feature_drift", "instance": None, "until": UNTIL},
                  status=201)
    r = vigil("alerts", "silence", "feature_drift", "--seconds", "10m", "--url", server.url, "--reason", "deploy",
              env={"VIGIL_API_TOKEN": "  op-token-0123456789\n"})
    assert r.exit_code == 0, r.output
    (sent,) = server.requests
    assert sent["body"] == {"rule": "feature_drift", "seconds": 600.0, "instance": None, "reason": "deploy",
                            "by": None}
    assert sent["headers"]["Authorization"] == "Bearer op-token-0123456789"  # stripped, as the server strips it
    assert r.stdout.strip().splitlines() == [
        "silence 12: feature_drift silenced for 10m, until 2027-01-15T08:00:00Z "
        "(end it early: vigil alerts unsilence 12)"]


@pytest.mark.parametrize("given, seconds", [("90s", 90.0), ("2h", 7200.0), ("1d", 86400.0), ("45", 45.0),
                                            ("1h30m", 5400.0)])
def test_silence_durations(server, given, seconds):
    server.answer("POST", "/admin/silences", {"id": 1, "rule": "*", "instance": None, "until": UNTIL})
    assert vigil("alerts", "silence", "*", "--for", given, "--url", server.url).exit_code == 0
    assert server.requests[0]["body"]["seconds"] == seconds


def test_silence_json_is_the_servers_answer(server):
    answer = {"id": 3, "rule": "x", "instance": "f", "until": UNTIL}
    server.answer("POST", "/admin/silences", answer)
    r = vigil("alerts", "silence", "x", "--instance", "f", "--url", server.url, "--json")
    assert json.loads(r.stdout) == answer


def test_ack_unsilence_and_rebaseline_print_one_line_each(server):
    server.answer("POST", "/admin/alerts/ack", {"acknowledged": 2})
    server.answer("DELETE", "/admin/silences/7", {"id": 7, "ended": True})
    server.answer("POST", "/admin/rebaseline", {"version": 4, "window_id": 31, "rows": 1000})
    ack = vigil("alerts", "ack", "feature_drift", "--by", "alice", "--url", server.url)
    assert ack.stdout.strip() == "acknowledged 2 firing alerts of feature_drift as alice: no repeats until it resolves"
    assert vigil("alerts", "unsilence", "7", "--url", server.url).stdout.strip() == "silence 7 ended"
    rebase = vigil("alerts", "rebaseline", "31", "--url", server.url)
    assert rebase.stdout.strip().startswith("window 31 (1,000 rows) is now reference version 4")
    assert json.loads(vigil("alerts", "rebaseline", "31", "--url", server.url, "--json").stdout)["version"] == 4


def test_a_refused_action_is_one_line_naming_the_status_and_the_token(server):
    server.answer("POST", "/admin/alerts/ack", {"error": "missing or invalid bearer token"}, status=401)
    r = vigil("alerts", "ack", "feature_drift", "--url", server.url)
    assert r.exit_code == 2
    line = _one_error_line(r)
    assert "HTTP 401" in line and "invalid bearer token" in line and "VIGIL_API_TOKEN" in line


def test_an_unreachable_server_is_one_line(server):
    url = server.url
    server.httpd.server_close()
    r = vigil("status", "--url", url)
    assert r.exit_code == 2
    assert f"cannot reach {url}" in _one_error_line(r)


def test_status_summarises_and_json_passes_through(server):
    body = {"model": "fraud:abc", "task": "classification", "features": 4, "in_sample_baseline": False,
            "baseline": {"accuracy": 0.91}, "windows": {"window_rows": 200, "window_seconds": 60,
                                                       "rows_counted": 1234, "store": "ok",
                                                       "last_closed": {"window_id": 5, "rows": 200,
                                                                       "drifted": ["alcohol"],
                                                                       "evaluated_at": UNTIL},
                                                       "first_signal": {"line": "the default feature_drift "
                                                                        "alert can fire when window 2 closes"}},
            "progress": "window 6: 12/200 rows, closes at 2027-01-15T08:01:00Z",
            "alerts": {"firing": ["feature_drift[alcohol]"]}}
    server.answer("GET", "/monitoring/status", body)
    text = vigil("status", "--url", server.url).stdout
    assert "fraud:abc (classification, 4 features)" in text
    assert "window 5: 200 rows, evaluated 2027-01-15T08:00:00Z; drifted: alcohol" in text
    assert "firing: feature_drift[alcohol]" in text
    assert "open      window 6: 12/200 rows, closes at 2027-01-15T08:01:00Z" in text   # the open window's progress
    assert "signal    the default feature_drift alert can fire when window 2 closes" in text
    assert json.loads(vigil("status", "--url", server.url, "--json").stdout) == body


@pytest.mark.parametrize("args, expected", [
    (("regster",), "no such command 'regster'; did you mean 'register'?"),
    (("alerts", "silenc"), "no such command 'silenc'; did you mean 'silence'?"),
    (("alerts", "silence", "x", "--seconds", "10x"), "'10x' is not a duration"),
    (("alerts", "silence", "x", "--seconds", "0"), "a duration must be positive"),
    (("serve", "--port", "abc"), "Invalid value for '--port'"),
    (("alerts", "unsilence"), "Missing argument 'ID'"),
    (("models", "show", "no-such-model"), "no model 'no-such-model' in the model store"),
])
def test_usage_mistakes_are_one_line_and_exit_2(args, expected):
    r = vigil(*args)
    assert r.exit_code == 2
    assert expected in _one_error_line(r)


def test_version_names_the_installed_packages():
    r = vigil("--version")
    assert r.exit_code == 0
    assert r.stdout.startswith(f"vigil {dist_version('vigil')} (bentoml {dist_version('bentoml')}, python ")


def test_python_dash_m_and_the_entry_point_run_the_same_cli():
    import tomllib

    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["vigil"]
    assert script == "service.cli:main"
    r = subprocess.run([sys.executable, "-m", "service.cli", "--version"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("vigil "), r.stderr


def test_models_list_and_show_read_the_store(demo_tags):
    listing = json.loads(vigil("models", "list", "--json").stdout)
    demo = next(m for m in listing if m["tag"] == demo_tags["classifier"])
    assert demo["task"] == "classification" and demo["versions"] >= 1 and "accuracy" in demo["baseline"]
    assert demo["created_iso"].endswith("Z")
    text = vigil("models", "list").stdout
    assert demo_tags["classifier"].split(":")[0] in text and demo_tags["regressor"].split(":")[0] in text

    name = demo_tags["classifier"].split(":")[0]
    shown = json.loads(vigil("models", "show", name, "--json").stdout)
    assert shown["tag"] == demo_tags["classifier"] and len(shown["features"]) == 30
    assert shown["versions"][-1]["tag"] == demo_tags["classifier"]
    text = vigil("models", "show", demo_tags["regressor"]).stdout
    assert "task      regression" in text and "versions of" in text and "bmi" in text


@pytest.mark.parametrize("args, expected", [
    (("simulate", "nosuch"), "scenario must be one of steady, gradual-drift"),
    (("simulate", "steady", "--data", "rows.csv"), "--data needs --target"),
    (("simulate", "steady", "--rate", "0"), "rate must be in (0, 500]"),
])
def test_simulate_refuses_bad_knobs_in_one_line(args, expected):
    r = vigil(*args)
    assert r.exit_code == 2
    assert expected in _one_error_line(r)


def test_simulate_says_how_to_pass_the_token_when_the_sample_is_refused(server):
    server.answer("GET", "/monitoring/sample?limit=1000&seed=0", {"error": "missing or invalid bearer token"},
                  status=401)
    r = vigil("simulate", "steady", "--url", server.url, "--duration", "1", "--token", " secret-token-123456 \n")
    assert r.exit_code == 2
    assert "pass --token or set VIGIL_API_TOKEN" in _one_error_line(r)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer secret-token-123456"
