"""Errors raised while getting a model in.

Both are ``ValueError`` subclasses whose message is one clear line, so that the CLI can
print it as is, without a traceback::

    ValueError
     ├── RegistrationError   (models.errors) model or data unusable, or not in the store
     └── DataError           (models.data) file unreadable or lacking a column
"""

from __future__ import annotations


class RegistrationError(ValueError):
    """The model or its data cannot be registered (or loaded); the message is one clear line."""
