"""A store written by an older schema is brought to the current one in place, data kept."""

from __future__ import annotations

import sqlite3

from monitoring.store import SCHEMA_VERSION, Store


def test_v1_store_is_migrated(tmp_path):
    path = tmp_path / "v.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE vigil_schema_version (version INTEGER PRIMARY KEY);
        INSERT INTO vigil_schema_version VALUES (1);
        CREATE TABLE vigil_window_results (model VARCHAR(300), window_id BIGINT, status VARCHAR(20) NOT NULL,
            claimed_by VARCHAR(200) NOT NULL, claimed_at FLOAT NOT NULL, rows BIGINT, rows_expected BIGINT,
            started_at FLOAT, ended_at FLOAT, evaluated_at FLOAT, report TEXT, PRIMARY KEY (model, window_id));
        INSERT INTO vigil_window_results VALUES ('m', 0, 'done', 'w', 1.0, 10, 10, 1.0, 2.0, 3.0, '{"rows": 10}');
    """)
    db.commit()
    db.close()
    s = Store(f"sqlite:///{path}")
    assert SCHEMA_VERSION == 4
    sketch, report = s.windows.sketch("m", 0)
    assert sketch is None and report == {"rows": 10}          # old window kept, no sketch to adopt
    (old,) = s.windows.digests("m", 10)                       # and no digest: read from its report
    assert old.digest is None and old.report == {"rows": 10} and old.rows == 10
    assert s.alerts.all("m") == [] and s.references.version("m") == 0  # the new tables exist
    s.dispose()
    Store(f"sqlite:///{path}").dispose()                       # and a second start is a no-op


def test_a_v3_store_gets_the_digest_table_and_keeps_its_windows(tmp_path):
    path = tmp_path / "v3.db"
    s = Store(f"sqlite:///{path}")
    assert s.windows.claim("m", 0, "w", 1.0) and s.windows.finish("m", 0, "w", {"rows": 10}, 10, 10, 1.0, 2.0, 3.0)
    s.dispose()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE vigil_window_digests; UPDATE vigil_schema_version SET version = 3;")
    db.commit()
    db.close()
    s = Store(f"sqlite:///{path}")
    (old,) = s.windows.digests("m", 10)
    assert old.digest is None and old.report == {"rows": 10}
    assert s.windows.claim("m", 1, "w", 4.0) and s.windows.finish("m", 1, "w", {"rows": 5}, 5, 5, 4.0, 5.0, 6.0,
                                                                  digest=b"VGD1 packed")
    assert [(d.window_id, d.digest, d.report) for d in s.windows.digests("m", 10)] == [
        (1, b"VGD1 packed", None), (0, None, {"rows": 10})]
    s.dispose()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM vigil_schema_version").fetchall() == [(4,)]
    db.close()
