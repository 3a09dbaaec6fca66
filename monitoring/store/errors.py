"""The store's errors: what a caller of :class:`~monitoring.store.Store` may catch.

::

    Exception
    ├── StoreUnavailable        the database is unreachable, locked or failing (any
    │                           SQLAlchemy error the store does not handle itself);
    │                           nothing of the failed call was committed: retry later
    └── ValueError
        └── OutcomeConflict     outcomes contradict stored ones; nothing was written

``StoreUnavailable`` deliberately derives from nothing of SQLAlchemy's: callers (the
runtime, the HTTP layer) handle store trouble without importing SQLAlchemy. The original
error stays reachable as ``__cause__`` for logs and debugging.

The translation is done once, at the edge of each sub-store: :func:`guarded` wraps every
public method of a class so that any ``SQLAlchemyError`` escaping it becomes
``StoreUnavailable``. Errors that are part of the store's logic (``IntegrityError`` when two
workers insert the same row) are caught inside the method and never reach the edge.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, TypeVar

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["StoreUnavailable", "OutcomeConflict", "guarded"]

F = TypeVar("F", bound=Callable)
C = TypeVar("C", bound=type)


class StoreUnavailable(Exception):
    """The database could not do what was asked (unreachable, locked, out of space,
    failing); nothing of the call was committed. ``reason`` is one short line such as
    ``"OperationalError: database is locked"``; the original error is ``__cause__``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    @classmethod
    def from_error(cls, exc: BaseException) -> "StoreUnavailable":
        """The error for ``exc``: its class name and the first line of the driver's message
        (SQLAlchemy's own message repeats the driver's and appends the SQL)."""
        orig = getattr(exc, "orig", None)
        lines = str(orig if orig is not None else exc).strip().splitlines()
        detail = lines[0][:200] if lines else ""
        out = cls(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)
        out.__cause__ = exc
        return out


class OutcomeConflict(ValueError):
    """Some outcomes contradict ones already stored (or each other); nothing was written.
    ``conflicts`` holds (position in the batch, message)."""

    def __init__(self, conflicts: list[tuple[int, str]]):
        self.conflicts = conflicts
        super().__init__(f"{len(conflicts)} outcome(s) conflict with stored ones")


def translated(fn: F) -> F:
    """``fn`` with every ``SQLAlchemyError`` it raises turned into :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise StoreUnavailable.from_error(exc) from exc

    call.__store_guarded__ = True  # type: ignore[attr-defined]  (the layout test checks every public method)
    return call  # type: ignore[return-value]


def guarded(cls: C) -> C:
    """Class decorator: every public method of ``cls`` raises :class:`StoreUnavailable`,
    never a SQLAlchemy error (one place for the translation, not one per method)."""
    for name, attr in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(attr):
            setattr(cls, name, translated(attr))
    return cls
