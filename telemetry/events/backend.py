"""What the events stage and the API need of an event store, whichever backend keeps it.

Two backends answer the same calls: embedded SQLite day files
(``telemetry.events.store``) for one server, and PostgreSQL
(``telemetry.events.store_pg``) when several servers must search one shared
store. The histogram's bucket filling and the expired-on-arrival accounting
are written here once, so both backends answer alike.
"""

from __future__ import annotations

import functools

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter

from telemetry.events.times import from_micros, to_micros
from telemetry.metrics import REGISTRY
from telemetry.timeutil import utcnow

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
#: Sources whose expired-on-arrival count is kept apart (the rest add up under one name).
EXPIRED_SOURCES_KEPT = 100
EVENTS_EXPIRED_ON_ARRIVAL = Counter(
    "telemetry_events_expired_on_arrival", "Events older than their ttl when they arrived, not stored",
    registry=REGISTRY)


class StoreUnavailable(Exception):
    """The store's database could not answer a read (the API says 503: retry, not a bad request)."""


@dataclass
class Histogram:
    interval: float
    buckets: list[tuple[datetime, int]]

    @property
    def total(self) -> int:
        return sum(c for _, c in self.buckets)


def bucket_step(interval: float) -> int:
    """A histogram's bucket width in microseconds; raises ValueError for one that is not positive."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    return int(interval * 1_000_000)


def histogram_of(counts: Mapping[int, int], interval: float, step: int, start: datetime | None,
                 end: datetime | None, max_buckets: int) -> Histogram:
    """Counts per bucket start (microseconds) as a histogram; empty buckets between the ends filled with 0."""
    lo = (to_micros(start) // step) * step if start else min(counts, default=0)
    hi = (to_micros(end) // step) * step if end else max(counts, default=-1)
    if hi >= lo and (hi - lo) // step + 1 > max_buckets:
        raise ValueError(f"{(hi - lo) // step + 1} buckets exceed the limit of {max_buckets}: "
                         "use a larger interval or a shorter time range")
    buckets = [(from_micros(b), counts.get(b, 0)) for b in range(lo, hi + 1, step)] if counts or start else []
    return Histogram(interval, buckets)


def count_expired(kept: dict[str, int], by_source: Mapping[str, int], ttl: float) -> None:
    """Old lines are dropped, never silently: counted, and logged once per source with the count."""
    EVENTS_EXPIRED_ON_ARRIVAL.inc(sum(by_source.values()))
    for source, n in by_source.items():
        if source not in kept:
            log.warning("event store: %d events from %s are older than the retention (%gs) and were not stored; "
                        "raise store.ttl.events to keep such lines (logged once per source, counted in "
                        "telemetry_events_expired_on_arrival_total and /healthz)", n, source, ttl)
            if len(kept) >= EXPIRED_SOURCES_KEPT:
                source = "(other sources)"
        kept[source] = kept.get(source, 0) + n


DAY_US = 86_400 * 1_000_000


_EPOCH = date(1970, 1, 1)


def day_of(ts_us: int) -> date:
    return day_number(ts_us // DAY_US)


@functools.lru_cache(maxsize=64)
def day_number(n: int) -> date:
    """Day ``n`` since the epoch: cached, as a batch's rows nearly all fall on one or two days."""
    return _EPOCH + timedelta(days=n)


def day_start_us(day: date) -> int:
    return to_micros(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


class DayRetention:
    """Expiry by whole UTC days, the same on both backends: a day goes once all of it is past the ttl."""

    ttl: float

    def partitions(self) -> Sequence[tuple[date, object]]:
        raise NotImplementedError

    def drop_partition(self, day: date, reason: str) -> int:
        raise NotImplementedError

    def oldest_kept_us(self, now: datetime | None = None) -> int:
        """Events older than this are past their ttl."""
        return to_micros((now or utcnow()) - timedelta(seconds=self.ttl))

    def expire(self, now: datetime | None = None) -> int:
        """Drop every partition wholly older than the ttl; returns how many."""
        floor = self.oldest_kept_us(now)
        dropped = 0
        for day, _ in self.partitions():
            if day_start_us(day) + DAY_US <= floor:
                self.drop_partition(day, "ttl")
                dropped += 1
        return dropped


def source_of(row: Row) -> str:
    """Where an event came from, as the expired-on-arrival count names it: component (or type) on host."""
    return f"{row[3] or row[4] or '?'} on {row[2] or '?'}"


class RecordInsert:
    """``insert_records``, the same on every backend that builds its rows where ``insert`` runs."""

    def insert(self, rows: Iterable[Row], now: datetime | None = None) -> int:
        raise NotImplementedError

    def insert_records(self, records: Sequence[Any]) -> tuple[int, list[tuple[int, str]]]:
        """Store events and notifications (records or contract dicts): (new ones, (index, reason) of refused ones)."""
        from telemetry.events.rows import rows_of

        rows, bad = rows_of(records)
        return (self.insert(rows) if rows else 0), bad


class EventBackend(Protocol):
    """The calls the events stage, the API and the retention loop make; both backends implement them."""

    ttl: float
    #: Events dropped on arrival for being older than the ttl, per source ("nova on cn01").
    expired_on_arrival: dict[str, int]

    def describe(self) -> str:
        """Where the events are kept (a folder, or a PostgreSQL address without its password)."""
        ...

    def insert(self, rows: Iterable[Row], now: datetime | None = None) -> int:
        """Write rows durably; returns how many were new. Duplicates (same ``id``) are ignored."""
        ...

    def insert_records(self, records: Sequence[Any]) -> tuple[int, list[tuple[int, str]]]:
        """``insert`` of the records' rows: (how many were new, (index, reason) of those that cannot be stored)."""
        ...

    def search(self, query: str | None = None, start: datetime | None = None, end: datetime | None = None,
               limit: int = 100, newest_first: bool = True) -> list[dict[str, Any]]: ...

    def histogram(self, query: str | None, interval: float, start: datetime | None = None,
                  end: datetime | None = None, max_buckets: int = 10_000) -> Histogram: ...

    def partitions(self) -> Sequence[tuple[date, object]]:
        """The day partitions held, oldest first, each with what holds it (a file, a table name)."""
        ...

    def size_bytes(self) -> int: ...

    def maintain(self, now: datetime | None = None) -> int:
        """Expire what is past the ttl (and shed for disk space where the store owns the disk)."""
        ...

    def close(self) -> None: ...


def open_event_store(url: str, data_dir: Path, ttl: float, min_free_disk: float,
                     writer: str = "thread") -> EventBackend:
    """``sqlite://`` -> day files under ``<data_dir>/events``; ``sqlite:///folder`` elsewhere;
    ``postgresql://...`` -> day partitions in PostgreSQL, shared by every server pointed at it.

    ``writer="process"`` has the SQLite files written by a child process (``telemetry.events.writer``).
    """
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        from telemetry.events.store_pg import PgEventStore

        return PgEventStore(url, ttl=ttl)
    if scheme != "sqlite":
        raise ValueError(f"unsupported event store URL {url!r} (sqlite:// or postgresql://)")
    root = Path(rest) if rest else data_dir / "events"
    if writer == "process":
        from telemetry.events.writer import ProcessEventStore

        return ProcessEventStore(root, ttl=ttl, min_free_disk=min_free_disk)
    from telemetry.events.store import EventStore

    return EventStore(root, ttl=ttl, min_free_disk=min_free_disk)
