"""The one protocol of mergeable state: what every worker's share of a window is made of.

Several workers (and replicas) each fold their own rows into a partial window; the
evaluator merges the partials stored for a window id into one. That only gives the figures
a single process would have computed if every piece of that state merges exactly, survives
the store as JSON, and has an empty value to start from. A type states it by subclassing
:class:`Mergeable` (``tests/test_mergeable.py`` runs one contract over every subclass):

- ``merge(other)`` returns a new object, equal to one pass over both sides' rows (counts
  exactly, moments up to floating-point rounding); neither input changes. It is
  associative, and ``empty_like()`` is its identity on both sides. ``a + b`` is ``a.merge(b)``.
- ``to_dict()`` is JSON-ready and ``type(x).from_dict(x.to_dict())`` equals ``x``.
- ``empty_like()`` is an empty object of the same shape (the same bins, categories, edges),
  so that it merges with ``self``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping, Protocol, Self, runtime_checkable


@runtime_checkable
class Mergeable(Protocol):
    """Mergeable, serialisable state (see the module docstring for the contract)."""

    __slots__ = ()

    @abstractmethod
    def merge(self, other: Self) -> Self:
        """This state and ``other`` combined, as a new object."""

    def __add__(self, other: Self) -> Self:
        return self.merge(other)

    @abstractmethod
    def empty_like(self) -> Self:
        """An empty object of the same shape: the identity of :meth:`merge`."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, read back by :meth:`from_dict`."""

    @classmethod
    @abstractmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """The object :meth:`to_dict` describes."""
