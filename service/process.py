"""Process-level tuning of a serving worker (nothing here knows about models or monitors)."""

from __future__ import annotations

import gc
from typing import Any


def freeze_startup_heap() -> None:
    """Move what start-up built (BentoML, scikit-learn, the model, the reference; ~260,000
    tracked objects) out of the cyclic garbage collector's way. Objects that outlive a
    request by a little (monitor items waiting for a flush, spans waiting for export) are
    promoted often enough under load to trigger a full collection every second or two, and
    each one walked the whole start-up heap: 150-160 ms pauses, p99 0.16 s on the demo
    model at 600 req/s (34 ms after). Frozen objects are still freed by reference
    counting; only cycles among them are never collected, so collect once first."""
    gc.collect()
    gc.freeze()


def gc_state() -> dict[str, Any]:
    return {"frozen_objects": gc.get_freeze_count(),
            "collections": [g["collections"] for g in gc.get_stats()]}
