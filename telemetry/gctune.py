"""Garbage-collector and allocator settings for a long-running daemon process.

The hot paths (the agent's shipping, the server's parse and store stages)
create and drop a few container objects per log line. With CPython's default
thresholds (a young collection every 700 allocations) and the daemon's large
startup heap (pydantic schemas, FastAPI routes, pattern libraries) rescanned
by the older generations, the collector cost up to a third of the agent's
CPU (measured with ``benchmarks/agent.py``).

The C allocator is tuned too (``tune_malloc``): glibc hands a freed block of
megabytes back to the kernel (above its trim threshold, or from an mmap of its
own), and every batch of the next megabytes then faults its pages in again,
zeroed by the kernel. The parse worker faulted 111,000 pages over 300,000 log
lines, the daemon 128,000: 1.2 µs of system time per line between them
(``benchmarks/pipeline.py``). Keeping up to ``TRIM_THRESHOLD`` of freed heap
for reuse took the worker to 10,500 faults, at the cost of that much resident
memory held back after a burst.

This is a decision for the whole process, so it is taken once, by the
``telemetry run|agent|server|parse`` commands after startup, never by a component:
components also run inside other processes (tests, benchmarks, embedders)
whose collector they have no business changing.
"""

from __future__ import annotations

import ctypes
import gc
import logging

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "YOUNG_THRESHOLD", "tune_for_daemon", "tune_malloc"]

log = logging.getLogger(__name__)

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


#: Blocks up to this size come from the heap, not from an mmap of their own that ``free`` unmaps at once
#: (glibc raises its own threshold only after such a block is freed, and caps it at 32 MiB): a batch's
#: pipe buffers and marshalled events, a few megabytes each.
MMAP_THRESHOLD = 16 << 20
#: Free memory at the top of the heap kept for reuse before glibc returns it to the kernel (its
#: default follows the mmap threshold at twice it, so a batch's megabytes went back and forth).
TRIM_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds (above); False where the C library is not glibc."""
    try:
        # The process's own symbols, the C library's among them: ctypes.util.find_library ran
        # ldconfig and cost every command 20 ms at start.
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (musl's mallopt does nothing)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the thresholds; glibc's defaults stay")
    return ok


def tune_for_daemon() -> None:
    """Freeze what startup built (never collected again), collect young objects less often, and keep
    freed heap memory for the next batch (``tune_malloc``)."""
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), older, oldest)
    tune_malloc()
