"""Per-minute and per-hour roll-ups: which one can answer a statistics query.

A roll-up row holds the partial aggregate (count, sum, sum of squares, min,
max, first and last sample time) of one series over one minute or hour, so
any bucket made of whole roll-up intervals merges to exactly what the raw
samples give. A query may use a granularity ``g`` when the bucket origin,
the period and both ends of the time range are multiples of ``g``, and when
it filters on nothing finer than a series (no volume or message id terms).
The coarsest usable roll-up wins; otherwise raw samples answer.

Roll-ups are written in the same transaction as the raw rows that feed them,
and only from rows that were actually new (see the backends), so a
redelivered sample counts once in both.
"""

from __future__ import annotations

from typing import Any

from telemetry.meter.store.base import GRANULARITY, Kind


def _aligned(value: int | None, g: int) -> bool:
    return value is None or value % g == 0


def choose_source(q: Any, period_ms: int | None, origin: int | None, force: Kind | None = None) -> Kind:
    """``h1``, ``m1`` or ``raw`` for this query (``force`` pins one, for tests and benchmarks)."""
    if force is not None:
        return force
    if q.sample_terms:
        return "raw"
    for kind in ("h1", "m1"):
        g = GRANULARITY[kind]
        if period_ms is not None and (period_ms % g or not _aligned(origin, g)):
            continue
        if _aligned(q.lo, g) and _aligned(q.hi, g):
            return kind
    return "raw"

