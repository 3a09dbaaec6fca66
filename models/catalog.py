"""What the model store holds: the Vigil-registered models, their versions and what each
was registered with (``vigil models list/show``).

Read-only. Only models written by :func:`models.artifacts.save_model` (BentoML label
``managed-by: vigil``) are listed; other BentoML models in the same store are left out.
A version whose stored metadata cannot be read is still listed, with ``problem`` saying
why, so one damaged entry never hides the others.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml

from .artifacts import META_FILE
from .errors import RegistrationError


@dataclass(frozen=True)
class StoredVersion:
    """One stored version: its tag, when it was registered and what was measured."""

    tag: str
    name: str
    version: str
    created: float
    task: str | None
    in_sample: bool | None
    baseline: dict[str, float] = field(default_factory=dict)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "name": self.name, "version": self.version, "created": self.created,
                "created_iso": _iso(self.created), "task": self.task, "in_sample": self.in_sample,
                "baseline": self.baseline}


@dataclass(frozen=True)
class ModelDetails:
    """One version in full (schema, sizes, model type) and every version of its name."""

    version: StoredVersion
    meta: dict[str, Any]
    versions: tuple[StoredVersion, ...]
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        schema = self.meta.get("schema") or {}
        return {**self.version.to_dict(), "target": schema.get("target"), "classes": schema.get("classes", []),
                "features": schema.get("features", []), "n_reference": self.meta.get("n_reference"),
                "n_validation": self.meta.get("n_validation"), "model_type": self.meta.get("model_type"),
                "path": self.version.path, "problem": self.problem,
                "versions": [v.to_dict() for v in self.versions]}


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(m: Any) -> StoredVersion:
    md = dict(m.info.metadata or {})
    created = m.creation_time
    return StoredVersion(tag=str(m.tag), name=m.tag.name, version=str(m.tag.version),
                         created=created.timestamp() if created else 0.0,
                         task=md.get("task") or (m.info.labels or {}).get("task"),
                         in_sample=md.get("in_sample"),
                         baseline={k[len("baseline_"):]: v for k, v in md.items() if k.startswith("baseline_")},
                         path=str(m.path))


def _ours(m: Any) -> bool:
    return (m.info.labels or {}).get("managed-by") == "vigil"


def versions(name: str | None = None) -> list[StoredVersion]:
    """Every Vigil-registered version (of ``name``, if given), oldest first."""
    try:
        stored = bentoml.models.list(name) if name else bentoml.models.list()
    except bentoml.exceptions.NotFound:
        return []
    return sorted((_version(m) for m in stored if _ours(m)), key=lambda v: (v.name, v.created))


def latest_per_name() -> list[tuple[StoredVersion, int]]:
    """The newest version of each registered name and how many versions it has, by name."""
    by_name: dict[str, list[StoredVersion]] = {}
    for v in versions():
        by_name.setdefault(v.name, []).append(v)
    return [(vs[-1], len(vs)) for _, vs in sorted(by_name.items())]


def details(tag: str) -> ModelDetails:
    """One version (``name`` for the latest, or ``name:version``) with its stored
    metadata; :class:`RegistrationError` naming the known models if there is none."""
    try:
        m = bentoml.models.get(tag)
    except (bentoml.exceptions.NotFound, ValueError):
        known = ", ".join(sorted({v.name for v in versions()})) or "none (register one with `vigil register`)"
        raise RegistrationError(f"no model {tag!r} in the model store; registered: {known}") from None
    if not _ours(m):
        raise RegistrationError(f"model {m.tag} was not registered by Vigil")
    problem, meta = None, {}
    try:
        meta = json.loads((Path(m.path) / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        problem = f"cannot read {META_FILE}: {exc}"
    return ModelDetails(version=_version(m), meta=meta, versions=tuple(versions(m.tag.name)), problem=problem)
