"""The store backends tests run on: SQLite always, Postgres when ``VIGIL_TEST_POSTGRES_URL``
is set (``.ci/run`` sets it for the local Postgres).

Every test session gets its own Postgres schema (``vigil_test_<random>``, dropped at exit),
and ``VIGIL_TEST_POSTGRES_URL`` is rewritten to select it through ``search_path``, so that
servers the tests start see the same schema. Sessions running at once (two checkouts, CI
and a developer) never share tables, and a database another checkout migrated to a newer
store version does not break this one.
"""

from __future__ import annotations

import atexit
import os
import secrets
from pathlib import Path

import pytest


def _private_schema(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"vigil_test_{secrets.token_hex(6)}"
    admin = create_engine(url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        try:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()

    atexit.register(drop)
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


PG = os.environ.get("VIGIL_TEST_POSTGRES_URL")
if PG and "search_path" not in PG:
    PG = os.environ["VIGIL_TEST_POSTGRES_URL"] = _private_schema(PG)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG, reason="VIGIL_TEST_POSTGRES_URL not set (.ci/run sets it for the local Postgres)"))]


def store_url(backend: str, directory: Path) -> str:
    return f"sqlite:///{directory / 'vigil.db'}" if backend == "sqlite" else PG
