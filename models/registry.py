"""Getting models in: :func:`register` saves a model with its schema, reference profile
and baseline in the BentoML model store; :func:`load` brings it back for serving.

Registration is four steps, one module each, run in this order by :func:`register`:

1. :mod:`models.schema_inference` reads the reference data once: features, kinds,
   dtypes, categories, task, classes, and a bounded uniform sample;
2. :mod:`models.probes` calls the model to learn what it accepts and returns (float
   width, largest magnitude, missing values, unseen categories, ``predict_proba``);
3. :mod:`models.profiling` reads the reference data a second time into the profile;
4. :mod:`models.baseline` measures performance on the validation data;

and :mod:`models.artifacts` writes the result (its docstring lists the stored files) and
reads it back. This module is the public face: ``register``, ``load``, ``read_schema``,
``load_validation``, ``Registered``, ``LoadedModel`` and the errors are imported from here.

Exception tree::

    ValueError
     ├── RegistrationError   model or data unusable; one clear line for the CLI
     └── DataError           (models.data) file unreadable or lacking a column
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from monitoring.schema import TASKS, ModelSchema

from .adapters import ModelAdapter
from .baseline import measure_baseline
from .data import DataError
from .errors import RegistrationError
from .frames import frame_to_columns, frame_to_model_input
from .insight import measure as measure_insight
from .pickles import read_model
from .probes import UNSEEN_PROBE, Capabilities, probe_capabilities
from .profiling import build_profile
from .schema_inference import scan_reference
from .artifacts import (ARTIFACT_VERSION, LoadedModel, load, load_validation, read_schema, save_model,
                        validation_rows)

__all__ = ["ARTIFACT_VERSION", "SAMPLE_ROWS", "UNSEEN_PROBE", "DataError", "LoadedModel", "Registered",
           "RegistrationError", "frame_to_columns", "frame_to_model_input", "load", "load_validation",
           "read_schema", "register", "validation_rows"]

log = logging.getLogger(__name__)

#: Reference rows kept as the bounded uniform sample (bins, detector, stored reference).
SAMPLE_ROWS = 10_000


@dataclass(frozen=True)
class Registered:
    """What :func:`register` stored and measured."""

    tag: str
    task: str
    in_sample: bool
    baseline: dict[str, float]
    n_reference: int
    n_validation: int
    warnings: tuple[str, ...] = ()
    #: what the report shows (models.report): the stored schema, what the probes found,
    #: the id- and date-like features (exempt from drift or kept), the model's type
    schema: ModelSchema | None = None
    probes: Capabilities | None = None
    roles: dict[str, str] = field(default_factory=dict)
    model_type: str = ""
    sample_rows: int = 0


def register(model_path: str | Path | None, reference: str | Path, target: str, *,
             validation: str | Path | None = None, name: str | None = None, task: str | None = None,
             categorical: Sequence[str] = (), monitor: Sequence[str] = (), sample_rows: int = SAMPLE_ROWS, seed: int = 0,
             progress: Callable[[int], None] | None = None, model: Any = None) -> Registered:
    """Register a model file (or an in-memory ``model``) with its reference profile.

    Returns the stored tag and what was measured. Raises :class:`RegistrationError` or
    :class:`DataError` with a one-line message on unusable input. ``monitor`` names
    id- or date-like features to keep tested for drift (see :mod:`models.column_roles`).
    """
    if task is not None and task not in TASKS:
        close = difflib.get_close_matches(task, TASKS, n=1, cutoff=0.5)
        raise RegistrationError(f"--task must be one of {', '.join(TASKS)}; got {task!r}"
                                + (f"; did you mean --task {close[0]}?" if close else ""))
    modules: dict[str, str] = {}
    if model is None:
        model, modules = read_model(model_path)
    if not (hasattr(model, "predict") or callable(model)):
        raise RegistrationError(f"{model_path}: object of type {type(model).__name__} has no predict() "
                                "and is not callable")
    scan = scan_reference(model, reference, target, task=task, categorical=categorical, monitor=monitor,
                          sample_rows=sample_rows, seed=seed, progress=progress)
    capabilities = probe_capabilities(model, scan.schema, scan.features)
    schema = capabilities.refine(scan.schema)
    adapter = ModelAdapter(model, schema, predict_from_proba=capabilities.predict_from_proba)
    profile = build_profile(adapter, reference, scan.sample, seed=seed)
    baseline = measure_baseline(adapter, validation, scan.sample, seed=seed)
    n_validation = int(len(baseline.rows))
    insight = measure_insight(adapter, baseline.rows, in_sample=baseline.in_sample, seed=seed)
    meta = {
        "schema": schema.to_dict(),
        "in_sample": baseline.in_sample,
        "baseline": baseline.metrics,
        "n_reference": scan.n_rows,
        "n_validation": n_validation,
        "predict_from_proba": capabilities.predict_from_proba,
        "model_type": f"{type(model).__module__}.{type(model).__qualname__}",
        "modules": modules,  # the user's modules the model imports, and where from (models.pickles)
    }
    stored_name = name or (Path(model_path).stem if model_path else None) or "model"
    tag = save_model(stored_name, model, meta, profile, scan.sample, baseline.rows, extras=insight.write)
    notes = scan.notes + baseline.notes + insight.notes
    for note in notes:  # info, not warning: the caller shows them (Python's last-resort handler printed them twice)
        log.info(note)
    return Registered(tag=tag, task=schema.task, in_sample=baseline.in_sample, baseline=baseline.metrics,
                      n_reference=scan.n_rows, n_validation=n_validation, warnings=notes, schema=schema,
                      probes=capabilities, roles=dict(scan.roles), model_type=meta["model_type"],
                      sample_rows=len(scan.sample))


