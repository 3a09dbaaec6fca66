"""Vigil configuration.

Precedence: explicit argument > ``VIGIL_*`` environment variable > YAML file named by
``VIGIL_CONFIG`` > default. Unknown keys (in the file, in explicit arguments, or a
``VIGIL_*`` variable that names no setting) are an error, so that a typo never silently
falls back to a default. Standard ``OTEL_*`` variables configure telemetry and are read by
the OpenTelemetry SDK itself, not here.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from monitoring.alerts import RuleSpec, WebhookSpec

ENV_PREFIX = "VIGIL_"
ENV_CONFIG = "VIGIL_CONFIG"
# Variables under these prefixes belong to Vigil's tooling (tests, benchmarks), not config.
_ENV_IGNORED_PREFIXES = ("VIGIL_TEST_", "VIGIL_BENCH_")

DEFAULT_MODEL = "vigil-demo-classifier:latest"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "vigil"


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and its source."""


class Settings(BaseModel):
    """The monitor's settings, validated. Build with :func:`load_settings`. The server adds
    its own (workers, token, body limit, dispatch) in :mod:`service.settings`; one loader,
    one precedence and one unknown-key rule for both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, description="BentoML model tag to serve.")
    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="Where the embedded store and state live.")
    store_url: str | None = Field(None, description="SQLAlchemy URL; overrides the SQLite file in data_dir.")
    store_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a store connection or lock.")
    window_rows: int = Field(1000, ge=1, description="A monitoring window closes after this many rows...")
    window_seconds: float = Field(300.0, gt=0, description="...or after this many seconds.")
    window_min_rows: int = Field(30, ge=1, description="A window with fewer rows is reported as too small, not judged.")
    drift_alpha: float = Field(0.01, gt=0, lt=1, description="Family-wise false-alarm rate per window (Holm).")
    drift_effect_floor: float = Field(0.1, ge=0, description="Smallest effect (normalised Wasserstein / JS distance) flagged.")
    log_sample_rate: float = Field(0.1, ge=0.0, le=1.0,
                                   description="Share of predictions whose feature values are logged.")
    max_batch_rows: int = Field(1000, ge=1, description="Largest batch accepted by /predict.")
    instance_id_field: str | None = Field(
        None, description="Per-instance id field (e.g. transaction_id), kept but never passed to the model.")
    privacy: dict[str, Literal["keep", "hash", "drop"]] = Field(
        default_factory=dict, description="Per-feature rule for logged feature values: keep, hash or drop.")
    privacy_salt: SecretStr = Field(SecretStr(""), description="Salt for hashed feature values.")
    decision_threshold: float | None = Field(None, gt=0, lt=1,
                                             description="Binary classifiers: predict the positive class at p >= this.")
    max_feedback_items: int = Field(10_000, ge=1, description="Largest batch /feedback accepts.")
    outcome_ttl_seconds: float = Field(30 * 24 * 3600, gt=0,
                                       description="An outcome still unmatched after this long expires (counted).")
    label_max_delay_seconds: float = Field(7 * 24 * 3600, gt=0,
                                           description="A window's performance is final after this long...")
    label_coverage_target: float = Field(0.95, gt=0, le=1, description="...or once this share of it is labelled.")
    retention_days: float | None = Field(90.0, gt=0, description="Delete logged predictions, outcomes and window "
                                                                "results older than this (None: keep all).")
    performance_floors: dict[str, float] = Field(
        default_factory=dict, description="Absolute floor (or ceiling, for error metrics) per performance metric.")
    performance_interval: float = Field(5.0, gt=0, description="Seconds between performance scoring passes.")
    monitor_queue_batches: int = Field(4096, ge=1, description="Bound of the monitor hand-off queue.")
    system_metrics_interval: float = Field(5.0, gt=0, description="Seconds between system metric samples.")
    shutdown_timeout: float = Field(4.0, gt=0, description="Seconds telemetry and monitor shutdown may take.")
    alert_rules: list[RuleSpec] = Field(default_factory=list,
                                        description="Alert rules; one named like a default rule replaces it.")
    alert_default_rules: bool = Field(True, description="Guard every model with the default rule set.")
    alert_false_alerts_per_week: float = Field(1.0, gt=0, description="False-alert budget the default rules "
                                                                     "are derived from (per model, at window_seconds).")
    alert_rows_per_second: float | None = Field(
        None, gt=0, description="Expected traffic, rows/s: the budget counts windows closing by rows at this rate "
                                "when they close faster than by time (None: windows assumed to close by time).")
    rate_effect_floor: float = Field(0.1, ge=0, description="Smallest change of a rate (missing, unseen, class "
                                                            "share...) a band flags, in Cohen's h (docs/thresholds.md).")
    performance_effect_floors: dict[str, float] = Field(
        default_factory=dict, description="Smallest drop the performance band flags, per metric, in its units "
                                          "(default 0.02 for metrics on [0, 1], else 2 % of the baseline).")
    alert_error_rate: float = Field(0.01, gt=0, lt=1, description="Server error rate still considered normal.")
    alert_webhooks: list[WebhookSpec] = Field(default_factory=list, description="Webhooks alerts are POSTed to.")
    alert_trace_url: str | None = Field(None, description="Link template for a trace id, e.g. "
                                                          "http://jaeger:16686/trace/{trace_id}.")
    alert_examples: int = Field(5, ge=0, le=50, description="Trace ids of example requests each alert carries.")

    @field_validator("instance_id_field")
    @classmethod
    def _id_field_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v

    @field_validator("alert_trace_url")
    @classmethod
    def _trace_template(cls, v: str | None) -> str | None:
        if v is not None:
            if "{trace_id}" not in v:
                raise ValueError("must contain {trace_id}")
            try:
                v.format(trace_id="0" * 32)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"only {{trace_id}} may be substituted ({exc})") from None
        return v

    @field_validator("alert_rules")
    @classmethod
    def _unique_rules(cls, v: list[RuleSpec]) -> list[RuleSpec]:
        seen = set()
        for r in v:
            if r.name in seen:
                raise ValueError(f"rule name {r.name!r} is used twice")
            seen.add(r.name)
        return v

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{self.data_dir / 'vigil.db'}"


def env_vars(settings_class: type[Settings] = Settings) -> dict[str, str]:
    """Environment variable for each setting, e.g. ``window_rows`` -> ``VIGIL_WINDOW_ROWS``."""
    return {name: ENV_PREFIX + name.upper() for name in settings_class.model_fields}


FIELDS = tuple(Settings.model_fields)
ENV_VARS = env_vars()


def _line_map(text: str) -> dict[tuple, int]:
    """1-based line of every key and item in a YAML document, by path (("alert_rules", 0, "name"): 7)."""
    out: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                out[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                out[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, ())
    return out


_LINES: dict[str, dict[tuple, int]] = {}


def _did_you_mean(name: str, choices) -> str:
    """'; did you mean X?' for a near miss, else the allowed names (one line either way)."""
    bare = {c.removeprefix(ENV_PREFIX).lower(): c for c in choices}  # the shared prefix is no evidence
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX).lower(), list(bare), n=1, cutoff=0.75)
    return f"; did you mean {bare[close[0]]}?" if close else f"; allowed: {', '.join(choices)}"


def _read_file(path: str | os.PathLike[str], fields: tuple[str, ...] = FIELDS) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        data = yaml.safe_load(text)
        _LINES[str(path)] = _line_map(text)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path}{where} is not valid YAML: {why}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        where = _LINES[str(path)].get((unknown[0],))
        raise ConfigError(f"config file {path}{f', line {where}' if where else ''}: unknown key(s) "
                          f"{', '.join(map(str, unknown))}{_did_you_mean(str(unknown[0]), fields)}")
    return data


_JSON_SETTINGS = {"privacy": '{"ssn": "drop"}', "performance_floors": '{"accuracy": 0.9}',
                  "performance_effect_floors": '{"accuracy": 0.01}',
                  "alert_rules": '[{"name": "slow", "series": "serving.latency_p99", "above": 0.5}]',
                  "alert_webhooks": '[{"url": "https://hooks.example.com/vigil"}]'}


def _read_env(environ: Mapping[str, str], variables: Mapping[str, str] = ENV_VARS) -> dict[str, Any]:
    known = {v: k for k, v in variables.items()}
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_CONFIG or key.startswith(_ENV_IGNORED_PREFIXES):
            continue
        if key not in known:
            raise ConfigError(f"unknown environment variable {key}{_did_you_mean(key, sorted(known))}")
        if known[key] in _JSON_SETTINGS:  # mappings and lists: JSON in the environment
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{key} must be JSON, e.g. {_JSON_SETTINGS[known[key]]}") from None
        out[known[key]] = value
    return out


def load_settings(environ: Mapping[str, str] | None = None, *, settings_class: type[Settings] = Settings,
                  **explicit: Any) -> Settings:
    """Build ``settings_class`` (:class:`Settings` or a subclass) from explicit arguments,
    the environment and the config file.

    >>> load_settings(environ={}, window_rows=50).window_rows
    50
    """
    environ = os.environ if environ is None else environ
    fields = tuple(settings_class.model_fields)
    variables = env_vars(settings_class)
    unknown = sorted(set(explicit) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if cfg := environ.get(ENV_CONFIG):
        for k, v in _read_file(cfg, fields).items():
            merged[k], sources[k] = v, f"config file {cfg}"
    for k, v in _read_env(environ, variables).items():
        merged[k], sources[k] = v, variables[k]
    for k, v in explicit.items():
        if v is not None:
            merged[k], sources[k] = v, "argument"
    try:
        return settings_class(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = str(loc[0]) if loc else "?"
        source = sources.get(key, "default")
        where = ".".join(map(str, loc)) or "?"
        if source.startswith("config file "):
            lines = _LINES.get(source[len("config file "):], {})
            # the deepest path the file has a line for (pydantic adds model-level suffixes)
            for n in range(len(loc), 0, -1):
                if loc[:n] in lines:
                    source += f", line {lines[loc[:n]]}"
                    break
        msg = err["msg"]
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        raise ConfigError(f"invalid setting {where} (from {source}): {msg}") from None
