import pytest

from monitoring.config import ConfigError, load_settings
from service.settings import load_server_settings


def test_precedence_argument_env_file_default(tmp_path):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("window_rows: 10\nwindow_seconds: 7\nmax_batch_rows: 3\n")
    env = {"VIGIL_CONFIG": str(cfg), "VIGIL_WINDOW_ROWS": "20", "VIGIL_WINDOW_SECONDS": "8"}
    s = load_settings(environ=env, window_rows=30)
    assert s.window_rows == 30          # argument beats env
    assert s.window_seconds == 8        # env beats file
    assert s.max_batch_rows == 3        # file beats default
    assert s.log_sample_rate == 0.1     # default


def test_unknown_file_key_is_an_error(tmp_path):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("window_row: 10\n")
    with pytest.raises(ConfigError, match="window_row"):
        load_settings(environ={"VIGIL_CONFIG": str(cfg)})


def test_unknown_env_var_is_an_error_but_test_vars_are_not():
    with pytest.raises(ConfigError, match="VIGIL_WINDOW_ROW"):
        load_settings(environ={"VIGIL_WINDOW_ROW": "5"})
    assert load_settings(environ={"VIGIL_TEST_POSTGRES_URL": "x"}).window_rows == 1000


def test_bad_values_name_the_setting_and_source():
    with pytest.raises(ConfigError, match=r"window_rows \(from VIGIL_WINDOW_ROWS\)"):
        load_settings(environ={"VIGIL_WINDOW_ROWS": "zero"})
    with pytest.raises(ConfigError, match="log_sample_rate"):
        load_settings(environ={}, log_sample_rate=2)
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={}, nope=1)


def test_store_url_defaults_to_sqlite_in_data_dir(tmp_path):
    s = load_settings(environ={"VIGIL_DATA_DIR": str(tmp_path)})
    assert s.resolved_store_url == f"sqlite:///{tmp_path / 'vigil.db'}"
    assert load_settings(environ={"VIGIL_STORE_URL": "postgresql://x/y"}).resolved_store_url == "postgresql://x/y"


def test_token_is_secret():
    s = load_server_settings(environ={"VIGIL_API_TOKEN": "s3cret"})
    assert "s3cret" not in repr(s) and s.api_token.get_secret_value() == "s3cret"


def test_server_only_settings_are_unknown_to_the_monitor_but_share_its_loader(tmp_path):
    with pytest.raises(ConfigError, match="VIGIL_WORKERS"):
        load_settings(environ={"VIGIL_WORKERS": "2"})  # the monitor never reads it
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("workers: 3\nwindow_rows: 7\n")
    s = load_server_settings(environ={"VIGIL_CONFIG": str(cfg), "VIGIL_WINDOW_ROWS": "9"})
    assert (s.workers, s.window_rows) == (3, 9)  # one precedence for both
    with pytest.raises(ConfigError, match="worker"):
        load_server_settings(environ={}, worker=2)


# -- alert rules in the config file ---------------------------------------------------

def _load_file(tmp_path, text: str):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(text)
    return load_settings(environ={"VIGIL_CONFIG": str(cfg)})


def test_alert_rules_load_from_yaml(tmp_path):
    s = _load_file(tmp_path, """
alert_rules:
  - name: slow
    series: serving.latency_p99
    above: 0.25
    for_windows: 2
    severity: critical
alert_webhooks:
  - url: https://hooks.example.com/vigil
    headers: {Authorization: Bearer x}
alert_trace_url: http://jaeger:16686/trace/{trace_id}
""")
    (r,) = s.alert_rules
    assert (r.name, r.series, r.above, r.for_windows, r.severity) == ("slow", "serving.latency_p99", 0.25, 2, "critical")
    assert s.alert_webhooks[0].headers == {"Authorization": "Bearer x"}


@pytest.mark.parametrize("text, expected", [
    ("alert_rules:\n  - name: a\n    series: drift.score\n    outside_band: true\n    for_windw: 3\n",
     "alert_rules.0.for_windw (from config file {path}, line 5): unknown key 'for_windw'"),
    ("window_rows: 5\nalert_rule: []\n", "config file {path}, line 2: unknown key(s) alert_rule"),
    ("alert_rules:\n  - name: a\n    series: drift.scor\n    above: 1\n",
     "alert_rules.0.series (from config file {path}, line 3): Input should be"),
    ("alert_rules:\n  - name: a\n    series: system.cpu\n    above: 1\n    below: 0.5\n",
     "alert_rules.0 (from config file {path}, line 2): Value error, rule 'a': give exactly one condition"),
    ("alert_webhooks:\n  - url: ftp://x\n", "alert_webhooks.0.url (from config file {path}, line 2)"),
    ("alert_trace_url: http://x/{span}\n", "alert_trace_url (from config file {path}, line 1)"),
    ("alert_rules:\n  - {name: a, series: system.cpu, above: 1}\n  - {name: a, series: system.cpu, above: 2}\n",
     "rule name 'a' is used twice"),
])
def test_malformed_alert_config_names_the_key_and_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as exc:
        _load_file(tmp_path, text)
    assert expected.format(path=tmp_path / "vigil.yaml") in str(exc.value)


def test_alert_rules_from_the_environment_are_json():
    s = load_settings(environ={"VIGIL_ALERT_RULES": '[{"name": "cpu", "series": "system.cpu", "above": 1.5}]'})
    assert s.alert_rules[0].above == 1.5
    with pytest.raises(ConfigError, match="VIGIL_ALERT_RULES must be JSON"):
        load_settings(environ={"VIGIL_ALERT_RULES": "cpu>1"})
