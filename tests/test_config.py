import pytest

from monitoring.config import ConfigError, load_settings


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
    s = load_settings(environ={"VIGIL_API_TOKEN": "s3cret"})
    assert "s3cret" not in repr(s) and s.api_token.get_secret_value() == "s3cret"
