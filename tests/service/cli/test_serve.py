"""``vigil serve`` on a user's mistake: one line naming it, exit status 2, no traceback, and
the server never started."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from service.cli import app


@pytest.fixture
def never_exec(monkeypatch):
    started = []
    monkeypatch.setattr("os.execvpe", lambda path, cmd, env: started.append(env))
    return started


def _serve(monkeypatch, env: dict[str, str], *args: str):
    for k in [k for k in __import__("os").environ if k.startswith("VIGIL_") and not k.startswith("VIGIL_TEST_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return CliRunner().invoke(app, ["serve", *args])


def _one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("env, files, expected", [
    ({"VIGIL_WINDOW_ROW": "200"}, {}, "unknown environment variable VIGIL_WINDOW_ROW; did you mean VIGIL_WINDOW_ROWS?"),
    ({"VIGIL_WINDOW_ROWS": "abc"}, {}, "invalid setting window_rows (from VIGIL_WINDOW_ROWS)"),
    ({"VIGIL_CONFIG": "{dir}/vigil.yaml"}, {"vigil.yaml": "window_row: 5\n"},
     "line 1: unknown key(s) window_row; did you mean window_rows?"),
    ({"VIGIL_CONFIG": "{dir}/missing.yaml"}, {}, "cannot read config file"),
    ({"VIGIL_CONFIG": "{dir}/bad.yaml"}, {"bad.yaml": "window_rows: [1\n"}, "is not valid YAML"),
    ({"VIGIL_WORKERS": "0"}, {}, "invalid setting workers (from VIGIL_WORKERS)"),
])
def test_a_configuration_mistake_is_one_line_and_exit_2(demo_tags, monkeypatch, tmp_path, never_exec, env, files,
                                                        expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    r = _serve(monkeypatch, {k: v.format(dir=tmp_path) for k, v in env.items()}, demo_tags["classifier"])
    assert r.exit_code == 2
    assert expected in _one_error_line(r)
    assert never_exec == []


def test_a_relative_config_path_is_resolved_before_the_server_changes_directory(demo_tags, monkeypatch, tmp_path,
                                                                                 never_exec):
    (tmp_path / "vigil.yaml").write_text("window_rows: 7\n")
    monkeypatch.chdir(tmp_path)
    r = _serve(monkeypatch, {"VIGIL_CONFIG": "vigil.yaml"}, demo_tags["classifier"], "--port", "0")
    assert r.exit_code == 0, r.output
    (env,) = never_exec
    assert env["VIGIL_CONFIG"] == str(tmp_path / "vigil.yaml")  # the server runs in the project root


def test_a_port_in_use_is_one_line_and_exit_2(demo_tags, monkeypatch, never_exec):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _serve(monkeypatch, {}, demo_tags["classifier"], "--port", str(port))
    assert r.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in _one_error_line(r)
    assert never_exec == []
