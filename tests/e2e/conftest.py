"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.support.phoenix import phoenix_available, run_phoenix


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    """A real Arize Phoenix trace backend (``.venv-phoenix``, made by ``make test``).
    Missing, it fails the test rather than skipping it: traces are a promise to check."""
    reason = phoenix_available()
    if reason:
        pytest.fail(f"Phoenix backend unavailable ({reason}); run `make phoenix` or `make test`")
    with run_phoenix(tmp_path_factory.mktemp("phoenix")) as phx:
        yield phx
