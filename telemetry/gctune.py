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

#: Allocations between young collections (CPython's default is 700). The server's batches keep
#: tens of thousands of records in flight between stages: with 20,000, many lived through a young
#: collection and were promoted, to be traced again by the older ones; 100,000 lets most die young
#: (the all-in-one daemon's own CPU per log line 29-30 -> 25-26 µs, ``benchmarks/pipeline.py``).
YOUNG_THRESHOLD = 100_000


def tune_for_daemon() -> None:
    """Freeze what startup built (never collected again) and collect young objects less often."""
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), older, oldest)
