"""The store backends tests run on: SQLite always, Postgres when ``VIGIL_TEST_POSTGRES_URL``
is set (``.ci/run`` sets it for the local Postgres)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PG = os.environ.get("VIGIL_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG, reason="VIGIL_TEST_POSTGRES_URL not set (.ci/run sets it for the local Postgres)"))]


def store_url(backend: str, directory: Path) -> str:
    return f"sqlite:///{directory / 'vigil.db'}" if backend == "sqlite" else PG
