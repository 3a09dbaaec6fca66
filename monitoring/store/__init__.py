from monitoring.store.core import *  # noqa: F401,F403
from monitoring.store.core import Store, OutcomeConflict, OutcomeIn, Partial, WindowRecord, KEEP_SKETCHES  # noqa: F401
