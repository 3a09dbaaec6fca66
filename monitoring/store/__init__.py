from monitoring.store.core import *  # noqa: F401,F403
from monitoring.store.core import Store, OutcomeConflict, OutcomeIn, Partial, WindowRecord, KEEP_SKETCHES  # noqa: F401
from sqlalchemy.exc import SQLAlchemyError as StoreUnavailable  # noqa: F401  (placeholder until the store split lands)
