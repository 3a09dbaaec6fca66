"""Vigil's monitoring library: everything but HTTP. It never imports BentoML.

Packages, each importing only those above it in this list (``tests/test_architecture.py``
enforces it)::

    names.py                 the vocabulary: metric, span-attribute and error-kind names
    schema.py metrics.py values.py
                             feature schema; the metric catalogue (OTel + Prometheus);
                             the one finite-float helper
    intake/   stats/         request validation and outcome parsing | sketches, profiles,
                             drift, quality, serving figures, performance, CBPE
                             (no SQL, no threads; intake and stats never import each other)
    alerts/                  series registry, rules, state machine, defaults and budget,
                             observers, Prometheus rule export (no SQL, no threads)
    config.py                settings: argument > VIGIL_* > VIGIL_CONFIG file > default
    store/                   tables, database, one module per kind of state, the Store
                             facade; failures surface as StoreUnavailable
    runtime/                 what owns threads and time: queue, windows, prediction log,
                             performance tracker, committer, alert engine, notifier,
                             system sampler, and ModelMonitor, which builds all of it

The names below are the public API; they are imported on first use, so
``import monitoring.config`` stays light.

Exception tree::

    Exception
     ├── StoreUnavailable          (store: the database is unreachable, locked or failing)
     ├── ValueError
     │    ├── ConfigError          (config: a setting, its source and what is wrong)
     │    ├── ValidationFailed     (intake: per row and field; HTTP 422/413)
     │    ├── FeedbackInvalid      (intake: per outcome; HTTP 422/413/409)
     │    ├── OutcomeConflict      (store: an outcome contradicts a stored one; HTTP 409)
     │    └── ActionInvalid        (runtime: an operator action names what the model lacks)
     └── LookupError
          └── ActionNotFound       (runtime: no such silence, alert or window)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelSchema": "monitoring.schema", "FeatureSpec": "monitoring.schema",
    "Metrics": "monitoring.metrics",
    "Settings": "monitoring.config", "ConfigError": "monitoring.config", "load_settings": "monitoring.config",
    "Validator": "monitoring.intake.validation", "ValidationFailed": "monitoring.intake.validation",
    "FeedbackInvalid": "monitoring.intake.outcomes", "parse_outcomes": "monitoring.intake.outcomes",
    "Profile": "monitoring.stats.profile", "WindowEvaluator": "monitoring.stats.evaluate",
    "DriftConfig": "monitoring.stats.evaluate", "WindowReport": "monitoring.stats.evaluate",
    "Baseline": "monitoring.stats.performance", "Cbpe": "monitoring.stats.performance",
    "RuleSpec": "monitoring.alerts", "SERIES": "monitoring.alerts",
    "Store": "monitoring.store", "StoreUnavailable": "monitoring.store", "OutcomeConflict": "monitoring.store",
    "ModelMonitor": "monitoring.runtime.monitor", "ModelInfo": "monitoring.runtime.monitor",
    "TelemetryHandles": "monitoring.runtime.monitor", "ActionInvalid": "monitoring.runtime.monitor",
    "ActionNotFound": "monitoring.runtime.monitor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'monitoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
