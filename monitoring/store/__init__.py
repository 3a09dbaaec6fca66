from monitoring.store.core import *  # noqa: F401,F403
from monitoring.store.core import Store, OutcomeConflict, OutcomeIn, Partial, WindowRecord, KEEP_SKETCHES  # noqa: F401
from monitoring.store.tables import SCHEMA_VERSION, outcomes, predictions  # noqa: F401
