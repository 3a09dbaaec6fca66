"""Adopted drift references (table ``vigil_references``): re-baselining replaces the
registered reference profile by the merged sketch of an evaluated window.

Versions count up from 1 per model; version 0 means the registered reference is in force.
Every worker polls :meth:`ReferenceStore.version` and loads a newer version with
:meth:`ReferenceStore.get`, so all of them judge windows against the same reference.
Adopted references are few and small and are never purged: they are the history of what
drift was measured against.

Transactions: each method is one transaction; two operators adopting at once get two
versions (the version number is taken under a savepoint and retried on a race).
Failure mode: database errors surface as :class:`~monitoring.store.errors.StoreUnavailable`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from monitoring.store.errors import guarded
from monitoring.store.tables import references


@guarded
class ReferenceStore:
    """``store.references``: adopt, version, get."""

    def __init__(self, engine: Engine, reader: Engine):
        self._engine = engine
        self._reader = reader

    def adopt(self, model: str, window_id: int, sketch: dict[str, Any], by: str | None, now: float) -> int:
        """Record ``sketch`` (window ``window_id``'s merged profile) as the model's next
        reference; returns its version."""
        with self._engine.begin() as c:
            for _ in range(3):
                v = int(c.execute(select(func.coalesce(func.max(references.c.version), 0))
                                  .where(references.c.model == model)).scalar()) + 1
                try:
                    with c.begin_nested():
                        c.execute(insert(references).values(model=model, version=v, window_id=window_id,
                                                            created_at=now, created_by=by, sketch=json.dumps(sketch)))
                    return v
                except IntegrityError:  # another re-baseline took this version: take the next
                    continue
        raise RuntimeError("could not record the new reference (concurrent re-baselines)")

    def version(self, model: str) -> int:
        """The newest adopted version, 0 if none (the registered reference)."""
        with self._reader.connect() as c:
            return int(c.execute(select(func.coalesce(func.max(references.c.version), 0))
                                 .where(references.c.model == model)).scalar())

    def get(self, model: str, version: int) -> tuple[int, dict[str, Any]] | None:
        """(window id, sketch) of an adopted version, None if there is no such version."""
        with self._reader.connect() as c:
            r = c.execute(select(references.c.window_id, references.c.sketch).where(and_(
                references.c.model == model, references.c.version == version))).first()
        return None if r is None else (int(r[0]), json.loads(r[1]))
