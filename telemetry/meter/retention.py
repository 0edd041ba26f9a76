"""Expiry by dropping whole day partitions, and a guard that refuses to fill the disk.

Raw partitions expire by the TTL class they were written under (the first
``store.ttl.meters`` pattern matching the meter, else ``store.ttl.default``);
roll-ups by ``store.rollups.minute`` / ``.hour``. A partition goes once its
whole day is older than its TTL, so nothing live is ever dropped early.

The guard: when the disk holding the store has less than
``store.min_free_disk`` free, the oldest partitions are shed (raw first,
since roll-ups still answer statistics, then minute, then hour roll-ups),
never today's, until the floor is met. Each shed partition is logged at
ERROR and counted in ``telemetry_store_partitions_shed``: losing data to a
full disk must be loud.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from prometheus_client import Counter, Gauge

from telemetry.meter.store.base import Partition, SampleStore, day_of, day_start_ms
from telemetry.metrics import REGISTRY

log = logging.getLogger(__name__)

PARTITIONS_EXPIRED = Counter("telemetry_store_partitions_expired", "Day partitions dropped at the end of their TTL",
                             ["kind"], registry=REGISTRY)
PARTITIONS_SHED = Counter("telemetry_store_partitions_shed",
                          "Day partitions dropped early because free disk fell below store.min_free_disk",
                          ["kind"], registry=REGISTRY)
STORE_BYTES = Gauge("telemetry_store_partition_bytes", "Bytes on disk of the sample store's partitions",
                    ["kind"], registry=REGISTRY)

SHED_ORDER = {"raw": 0, "m1": 1, "h1": 2}


def ttl_of(store: SampleStore, p: Partition) -> float:
    return float(p.ttl if p.kind == "raw" and p.ttl else store.rollup_ttl[p.kind])


def expire(store: SampleStore, now: datetime | None = None) -> list[Partition]:
    """Drop every partition whose day ended more than its TTL ago."""
    now_ms = int((now or datetime.now(timezone.utc)).timestamp() * 1000)
    dropped = []
    for p in store.partitions():
        if p.end_ms <= now_ms - ttl_of(store, p) * 1000:
            store.drop(p)
            PARTITIONS_EXPIRED.labels(kind=p.kind).inc()
            log.info("expired %s partition of %s (%d bytes freed)", p.kind, p.day, p.size)
            dropped.append(p)
    if dropped:
        oldest_kept = min((p.day for p in store.partitions()), default=day_of(now_ms))
        store.forget_series(day_start_ms(oldest_kept))
    return dropped


def guard_free_space(store: SampleStore, floor: float, now: datetime | None = None,
                     free: Callable[[], float | None] | None = None) -> list[Partition]:
    """Shed the oldest partitions while the free share of the disk is under ``floor``."""
    measure = free or store.free_fraction
    today = day_of(int((now or datetime.now(timezone.utc)).timestamp() * 1000))
    shed: list[Partition] = []
    level = measure()
    if level is None or level >= floor:
        return shed
    victims = sorted((p for p in store.partitions() if p.day < today), key=lambda p: (SHED_ORDER[p.kind], p.day))
    for p in victims:
        store.drop(p)
        PARTITIONS_SHED.labels(kind=p.kind).inc()
        log.error("free disk %.1f%% is below store.min_free_disk %.1f%%: SHED %s partition of %s (%d bytes) "
                  "before its TTL", level * 100, floor * 100, p.kind, p.day, p.size)
        shed.append(p)
        level = measure()
        if level is None or level >= floor:
            break
    else:
        if level is not None and level < floor:
            log.error("free disk still %.1f%% after shedding every partition older than today", level * 100)
    return shed


def observe_sizes(store: SampleStore) -> None:
    sizes = {"raw": 0, "m1": 0, "h1": 0}
    for p in store.partitions():
        sizes[p.kind] += p.size
    for k, v in sizes.items():
        STORE_BYTES.labels(kind=k).set(v)
