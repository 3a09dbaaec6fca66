"""The :class:`Store` facade: one object built from a URL, its state grouped by kind.

::

    store = Store("sqlite:///data/vigil.db")       # or postgresql+psycopg://...
    store.windows      # WindowStore: row counter, partials, seals, claims, window results
    store.outcomes     # OutcomeStore: prediction log, outcomes, performance results
    store.alerts       # AlertStore: alert state and its transaction, silences, outbox
    store.references   # ReferenceStore: adopted drift references
    store.purge(model, before)                     # retention over all of them
    store.dispose()

Building a Store creates missing tables and migrates an older schema (several workers may
start at once). Every public method of the sub-stores, and of the facade, raises
:class:`~monitoring.store.errors.StoreUnavailable` when the database fails.
"""

from __future__ import annotations

from monitoring.store.alerts import AlertStore
from monitoring.store.database import Database
from monitoring.store.errors import guarded
from monitoring.store.joins import OutcomeJoins
from monitoring.store.outcomes import OutcomeStore
from monitoring.store.references import ReferenceStore
from monitoring.store.windows import WindowStore


@guarded
class Store:
    """Vigil's state for every model, in one SQLAlchemy database.

    Parameters
    ----------
    url : a SQLAlchemy URL; ``sqlite:///<path>`` (the directory is created) or Postgres.
    connect_timeout : seconds to wait for a connection, or for SQLite's write lock.

    Raises
    ------
    StoreUnavailable : the database cannot be reached to create or check the schema.
    RuntimeError : the database holds a schema this code does not know.
    """

    def __init__(self, url: str, connect_timeout: float = 5.0):
        self._db = Database(url, connect_timeout)
        self._db.create()
        engine, reader = self._db.engine, self._db.reader
        self.windows = WindowStore(engine, reader)
        self.outcomes = OutcomeStore(engine, reader, OutcomeJoins())
        self.alerts = AlertStore(engine, reader)
        self.references = ReferenceStore(engine, reader)

    @property
    def url(self) -> str:
        return self._db.url

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ..."""
        return self._db.dialect

    def purge(self, model: str, before: float) -> dict[str, int]:
        """Retention: delete ``model``'s history older than ``before`` (epoch seconds):
        predictions and outcomes, the performance and window results of windows whose
        predictions are all gone, alert history and finished notifications. Returns rows
        deleted per kind (``predictions``, ``outcomes``, ``performance``, ``window_results``,
        ``alert_history``). Each part commits on its own; a failure leaves the rest for the
        next run."""
        out = self.outcomes.purge(model, before)
        kept = self.outcomes.oldest_logged_window(model)
        if kept is not None:
            out.update(self.windows.purge(model, before_window=kept))
        else:  # no prediction left at all (an idle model): every result older than ``before`` goes
            out.update(self.windows.purge(model, before_window=None, evaluated_before=before))
        out.update(self.alerts.purge(model, before))
        return out

    def dispose(self) -> None:
        """Close every pooled connection (the store stays usable: a later call reconnects)."""
        self._db.dispose()

    def __repr__(self) -> str:
        return f"Store({self._db.engine.url!r})"
