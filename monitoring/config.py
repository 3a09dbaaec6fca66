"""Vigil configuration.

Precedence: explicit argument > ``VIGIL_*`` environment variable > YAML file named by
``VIGIL_CONFIG`` > default. Unknown keys (in the file, in explicit arguments, or a
``VIGIL_*`` variable that names no setting) are an error, so that a typo never silently
falls back to a default. Standard ``OTEL_*`` variables configure telemetry and are read by
the OpenTelemetry SDK itself, not here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

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
    """All of Vigil's settings, validated. Build with :func:`load_settings`."""

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
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    api_token: SecretStr | None = Field(None, description="Bearer token required on /feedback and admin endpoints.")
    protect_predict: bool = Field(False, description="Require the token on /predict too.")
    instance_id_field: str | None = Field(
        None, description="Per-instance id field (e.g. transaction_id), kept but never passed to the model.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes serving requests.")
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
    trace_asgi_events: bool = Field(False, description="Export the ASGI per-message spans (http receive/send).")
    otel_export_timeout: float = Field(5.0, gt=0, description="Seconds an OTLP export may take before it is abandoned.")
    shutdown_timeout: float = Field(4.0, gt=0, description="Seconds telemetry and monitor shutdown may take.")

    @field_validator("instance_id_field")
    @classmethod
    def _id_field_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{self.data_dir / 'vigil.db'}"


FIELDS = tuple(Settings.model_fields)
#: Environment variable for each setting, e.g. ``window_rows`` -> ``VIGIL_WINDOW_ROWS``.
ENV_VARS = {name: ENV_PREFIX + name.upper() for name in FIELDS}


def _read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"allowed: {', '.join(FIELDS)}")
    return data


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {v: k for k, v in ENV_VARS.items()}
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_CONFIG or key.startswith(_ENV_IGNORED_PREFIXES):
            continue
        if key not in known:
            raise ConfigError(f"unknown environment variable {key}; allowed: {', '.join(sorted(known))}")
        if known[key] in ("privacy", "performance_floors"):  # mappings: JSON in the environment
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f'{key} must be a JSON object, e.g. {{"ssn": "drop"}}') from None
        out[known[key]] = value
    return out


def load_settings(environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
    """Build :class:`Settings` from explicit arguments, the environment and the config file.

    >>> load_settings(environ={}, window_rows=50).window_rows
    50
    """
    environ = os.environ if environ is None else environ
    unknown = sorted(set(explicit) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if cfg := environ.get(ENV_CONFIG):
        for k, v in _read_file(cfg).items():
            merged[k], sources[k] = v, f"config file {cfg}"
    for k, v in _read_env(environ).items():
        merged[k], sources[k] = v, ENV_VARS[k]
    for k, v in explicit.items():
        if v is not None:
            merged[k], sources[k] = v, "argument"
    try:
        return Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"invalid setting {key} (from {sources.get(key, 'default')}): {err['msg']}") from None
