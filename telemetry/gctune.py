"""Garbage-collector settings for a long-running daemon process.

The hot paths (the agent's shipping, the server's parse and store stages)
create and drop a few container objects per log line. With CPython's default
thresholds (a young collection every 700 allocations) and the daemon's large
startup heap (pydantic schemas, FastAPI routes, pattern libraries) rescanned
by the older generations, the collector cost up to a third of the agent's
CPU (measured with ``benchmarks/agent.py``).

This is a decision for the whole process, so it is taken once, by the
``telemetry run|agent|server|parse`` commands after startup, never by a component:
components also run inside other processes (tests, benchmarks, embedders)
whose collector they have no business changing.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_for_daemon"]

#: Net new container objects between young collections (CPython's default is 700; the count is of
#: objects allocated less those freed, so records that die by reference counting never trigger one).
#: The all-in-one server holds several hundred thousand such objects in flight at once (the agent's
#: unacknowledged batches, the stages' batches and deliveries, the events awaiting their commit).
#: Below that, every young collection traced the whole in-flight set and promoted it, for the older
#: generations to trace again: at 100,000 (itself up from 20,000, which cost more), a young
#: collection took ~50 ms and the collector 5.7 µs of the daemon's 27 per log line. Above it, records
#: die young and no collection runs while the daemon ingests (``benchmarks/pipeline.py``, the
#: daemon's own CPU per line 26 -> 20-21 µs). The cost is the cyclic garbage a collection would have
#: freed sooner: at most this many objects, and the daemon makes little (a few thousand a run).
YOUNG_THRESHOLD = 1_000_000


def tune_for_daemon() -> None:
    """Freeze what startup built (never collected again) and collect young objects less often."""
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), older, oldest)
