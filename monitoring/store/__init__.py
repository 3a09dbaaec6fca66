"""Vigil's state store (SQLAlchemy 2): SQLite in the data directory by default (WAL, several
workers on one machine share the file), Postgres through ``VIGIL_STORE_URL`` for several
replicas. Never called on the request path.

The public surface is :class:`Store` (``store.windows``, ``store.outcomes``,
``store.alerts``, ``store.references``, ``store.purge``, ``store.dispose``), the row types
its methods return, and its errors::

    Exception
    ├── StoreUnavailable        the database failed; nothing of the call was committed
    └── ValueError
        └── OutcomeConflict     outcomes contradict stored ones; nothing was written

Modules: ``tables`` (every table, the schema version), ``errors``, ``database`` (engines,
SQLite settings, create and migrate), one module per kind of state (``windows``,
``outcomes``, ``alerts``, ``references``; each imports only ``tables`` and ``errors``, never
a sibling), and ``facade`` (the :class:`Store` that composes them).
"""

from monitoring.store.alerts import AlertStore, AlertTransaction, OutboxRow, StoredAlert
from monitoring.store.errors import OutcomeConflict, StoreUnavailable
from monitoring.store.facade import Store
from monitoring.store.outcomes import IngestResult, OutcomeStore
from monitoring.store.references import ReferenceStore
from monitoring.store.tables import SCHEMA_VERSION
from monitoring.store.windows import KEEP_SKETCHES, Partial, WindowDigest, WindowRecord, WindowStore

__all__ = [
    "Store", "StoreUnavailable", "OutcomeConflict",
    "WindowStore", "OutcomeStore", "AlertStore", "AlertTransaction", "ReferenceStore",
    "Partial", "WindowRecord", "WindowDigest", "IngestResult", "StoredAlert", "OutboxRow",
    "KEEP_SKETCHES", "SCHEMA_VERSION",
]
