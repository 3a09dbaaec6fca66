"""Every Vigil table, declared once on one :data:`metadata`, and :data:`SCHEMA_VERSION`.

The store's modules (:mod:`~monitoring.store.windows`, :mod:`~monitoring.store.outcomes`,
:mod:`~monitoring.store.alerts`, :mod:`~monitoring.store.references`) each import their
tables from here and never from each other, so the package has no import cycles, and
:mod:`~monitoring.store.database` creates every table with one ``metadata.create_all``.

Changing a table here changes the schema of every existing store: a new column needs a
migration step in :mod:`~monitoring.store.database` and a new :data:`SCHEMA_VERSION`.
Nothing here touches a database.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table,
                        Text)

#: v1: windows, predictions, outcomes, performance; v2: window_results.sketch and the alert tables;
#: v3: outcomes.closed, at most one matched outcome per prediction (a unique partial index), and
#: waiting outcomes indexed by age; v4: window_digests.
SCHEMA_VERSION = 4

metadata = MetaData()

schema_version = Table("vigil_schema_version", metadata, Column("version", Integer, primary_key=True))

# -- windows (monitoring.store.windows) --------------------------------------------------------

counters = Table(
    "vigil_counters", metadata,
    Column("name", String(300), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

window_partials = Table(
    "vigil_window_partials", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("worker", String(200), primary_key=True),
    Column("rows", BigInteger, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sketch", Text, nullable=False),
    Column("rejected", Text, nullable=False, default="{}"),
)

window_seals = Table(
    "vigil_window_seals", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("rows_expected", BigInteger, nullable=False),
    Column("sealed_at", Float, nullable=False),
)

window_results = Table(
    "vigil_window_results", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("status", String(20), nullable=False),  # evaluating | done
    Column("claimed_by", String(200), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("rows", BigInteger),
    Column("rows_expected", BigInteger),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("evaluated_at", Float),
    Column("report", Text),
    Column("sketch", Text),  # the merged window profile (v2): what re-baselining adopts
)

# An evaluated window condensed for the dashboard (v4), opaque here: a few KB that its
# history reads instead of parsing the ~17 KB report (monitoring.runtime.history). A table
# of its own: a column after report and sketch would be read by walking their overflow
# pages (55 ms for 500 windows on SQLite, against 2 ms here). Windows from before v4 have none.
window_digests = Table(
    "vigil_window_digests", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("digest", LargeBinary, nullable=False),
)

# -- prediction log, outcomes, performance (monitoring.store.outcomes) ---------------------------

predictions = Table(
    "vigil_predictions", metadata,
    Column("model", String(300), primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("window_id", BigInteger, nullable=False),
    Column("predicted_at", Float, nullable=False),
    Column("client_request_id", String(256)),
    Column("instance_id", String(256)),
    Column("class_code", Integer),       # classifiers: index into the model's classes
    Column("value", Float),              # regressors: the prediction
    Column("proba", LargeBinary),        # classifiers: float32 probabilities
    Column("trace_id", String(32)),
    Column("features", Text),            # sampled (VIGIL_LOG_SAMPLE_RATE), privacy rules applied
)
Index("ix_vigil_predictions_window", predictions.c.model, predictions.c.window_id, predictions.c.seq)
Index("ix_vigil_predictions_instance", predictions.c.model, predictions.c.instance_id)
Index("ix_vigil_predictions_client", predictions.c.model, predictions.c.client_request_id, predictions.c.row_index)
Index("ix_vigil_predictions_time", predictions.c.model, predictions.c.predicted_at)

outcomes = Table(
    "vigil_outcomes", metadata,
    Column("model", String(300), primary_key=True),
    Column("okey", String(600), primary_key=True),    # the key as posted: r:<id>:<i> | i:<id> | c:<id>:<i>
    Column("class_code", Integer),
    Column("value", Float),
    Column("observed_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("request_id", String(64)),                 # the prediction it answers, once known
    Column("row_index", Integer),
    Column("window_id", BigInteger),                  # the prediction's window, once matched
    Column("seq", BigInteger),                        # the prediction's row number, once matched
    Column("matched_at", Float),                      # when it was joined (a window to re-score)
    Column("matched", Boolean, nullable=False, default=False),
    Column("expired", Boolean, nullable=False, default=False),  # stopped waiting: see ``closed``
    Column("closed", String(12)),                     # v3: why it stopped waiting: "expired" | "conflict"
)
Index("ix_vigil_outcomes_window", outcomes.c.model, outcomes.c.window_id)
Index("ix_vigil_outcomes_pred", outcomes.c.model, outcomes.c.request_id, outcomes.c.row_index)
#: v3: one label per prediction, whichever key it was posted under
OUTCOMES_ONE_PER_PREDICTION = Index(
    "ux_vigil_outcomes_matched", outcomes.c.model, outcomes.c.request_id, outcomes.c.row_index, unique=True,
    sqlite_where=outcomes.c.matched.is_(True), postgresql_where=outcomes.c.matched.is_(True))
#: v3: waiting outcomes by age (expiry, the background sweep); replaces v2's ix_vigil_outcomes_pending
OUTCOMES_WAITING = Index("ix_vigil_outcomes_waiting", outcomes.c.model, outcomes.c.matched, outcomes.c.expired,
                         outcomes.c.received_at)

performance = Table(
    "vigil_performance", metadata,
    Column("model", String(300), primary_key=True),
    Column("window_id", BigInteger, primary_key=True),
    Column("computed_at", Float, nullable=False),
    Column("final", Boolean, nullable=False),
    Column("labelled", BigInteger, nullable=False),
    Column("result", Text, nullable=False),
)

# -- alerts (monitoring.store.alerts) ----------------------------------------------------------

alerts = Table(
    "vigil_alerts", metadata,
    Column("model", String(300), primary_key=True),
    Column("rule", String(100), primary_key=True),
    Column("instance", String(300), primary_key=True),   # feature/class/metric, "" for one-value series
    Column("state", String(10), nullable=False),
    Column("bad", Integer, nullable=False),
    Column("good", Integer, nullable=False),
    Column("pending_since", Float),
    Column("fired_at", Float),
    Column("resolved_at", Float),
    Column("last_window", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("value", Float),
    Column("severity", String(10), nullable=False),
    Column("changed_at", Float, nullable=False),
    Column("notified_state", String(10)),                # last state announced (firing/resolved)
    Column("notified_at", Float),
    Column("repeats", Integer, nullable=False, default=0),
    Column("acked_at", Float),
    Column("acked_by", String(200)),
    Column("evidence", Text),                            # JSON of the last transition's evidence
    Column("data", Text),                                # JSON: per-rule memory (e.g. latency baseline windows)
)

alert_events = Table(
    "vigil_alert_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(300), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("instance", String(300), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("state", String(20), nullable=False),         # firing | resolved | repeat | acknowledged
    Column("at", Float, nullable=False),
    Column("window_id", BigInteger),
    Column("notified", Boolean, nullable=False),
    Column("payload", Text, nullable=False),
)
Index("ix_vigil_alert_events_model", alert_events.c.model, alert_events.c.id)

outbox = Table(
    "vigil_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(300), nullable=False),
    Column("key", String(700), nullable=False, unique=True),  # idempotency key: transition + sink
    Column("sink", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("claimed_by", String(200)),
    Column("delivered_at", Float),
    Column("failed", Boolean, nullable=False, default=False),
    Column("last_error", Text),
)
Index("ix_vigil_outbox_due", outbox.c.model, outbox.c.delivered_at, outbox.c.failed, outbox.c.next_at)

silences = Table(
    "vigil_silences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(300), nullable=False),
    Column("rule", String(100), nullable=False),          # "*" silences every rule
    Column("instance", String(300)),                      # None: every instance
    Column("created_at", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("reason", Text),
    Column("created_by", String(200)),
)

# -- adopted drift references (monitoring.store.references) --------------------------------------

references = Table(
    "vigil_references", metadata,
    Column("model", String(300), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("window_id", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
    Column("sketch", Text, nullable=False),
)
