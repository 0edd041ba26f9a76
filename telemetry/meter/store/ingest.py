"""The embedded store's write loop: a batch of samples to per-partition columns of new rows.

This is the one place that touches every sample, so it does as little per
sample as Python allows: fields are read from the model's ``__dict__`` in one
call, the series id and TTL class come from a cache keyed by the identity
fields, and a row newer than every row of its series in the head (samples
arrive in time order) is new without a lookup. Everything else (which
message ids can be left out of storage, packing, roll-ups) happens when an
hour is sealed, off this path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any
from collections.abc import Callable

import orjson

from telemetry.meter.store.base import DAY_MS, SeriesRow, series_of
from telemetry.models import Sample


@dataclass(slots=True)
class Part:
    """New rows of one (TTL class, day) partition, as columns."""

    ttl: int
    day: int
    head: Any  # the partition's ``Head`` (read only here)
    cut: int  # rows before this may already be sealed into chunks
    sid: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    vol: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    newest: dict[int, int] = field(default_factory=dict)  # series -> newest time in this batch
    keys: set[tuple[Any, ...]] | None = None  # identities of the rows above, once one was not in order
    late: list[int] = field(default_factory=list)  # indices of rows before ``cut``

    def batch_keys(self) -> set[tuple[Any, ...]]:
        if self.keys is None:
            self.keys = set(zip(self.sid, self.ts, self.ids))
        return self.keys


@dataclass(slots=True)
class IngestBatch:
    parts: list[Part]
    new_series: dict[int, SeriesRow]
    expired: int = 0


@dataclass(slots=True)
class Known:
    """What the write loop caches of a series."""

    row: SeriesRow
    ttl: int


_FIELDS = itemgetter("counter_name", "counter_type", "counter_unit", "resource_id", "project_id", "user_id", "source",
                     "resource_metadata", "timestamp", "message_id", "counter_volume")


class Splitter:
    """Per-store caches that outlive a batch: what is known of each series, by its identity fields."""

    def __init__(self, ttl_for: Callable[[str], int]) -> None:
        self.ttl_for = ttl_for
        self.series: dict[tuple[Any, ...], Known] = {}

    def clear(self) -> None:
        self.series.clear()

    def split(self, samples: list[Sample], now_ms: int, partition: Callable[[int, int], tuple[Any, int]]) -> IngestBatch:
        """``partition(ttl, day)`` -> (its ``Head``, its sealed cut)."""
        cache = self.series
        if len(cache) > 200_000:
            cache.clear()
        out = IngestBatch([], {})
        parts: dict[tuple[int, int], Part] = {}
        floors: dict[int, int] = {}
        dumps, sort_keys, fields = orjson.dumps, orjson.OPT_SORT_KEYS, _FIELDS
        new_series = out.new_series
        part: Part | None = None
        cur_ttl = cur_day = -1
        newest: dict[int, int] = {}
        head_newest: dict[int, int] = {}
        for s in samples:
            name, ctype, unit, rid, pid, uid, src, md, t, mid, vol = fields(s.__dict__)
            # ``_value_``, not the enum: Enum.__hash__ is Python code, a measurable share of this loop.
            key = (name, ctype._value_, unit, rid, pid, uid, src, dumps(md, option=sort_keys) if md else b"")
            k = cache.get(key)
            if k is None:
                row = series_of(s)
                k = cache[key] = Known(row, self.ttl_for(row.meter))
                new_series[row.id] = row
            ts = round(t.timestamp() * 1000)
            day = ts // DAY_MS
            ttl = k.ttl
            floor = floors.get(ttl)
            if floor is None:
                # A day whose partition already expired is not written: that would resurrect it.
                floor = floors[ttl] = (now_ms - ttl * 1000) // DAY_MS
            if day < floor:
                out.expired += 1
                continue
            if day != cur_day or ttl != cur_ttl:
                cur_ttl, cur_day = ttl, day
                part = parts.get((ttl, day))
                if part is None:
                    part = parts[(ttl, day)] = Part(ttl, day, *partition(ttl, day))
                newest, head_newest = part.newest, part.head.newest
            assert part is not None
            sid = k.row.id
            last = newest.get(sid)
            if last is None:
                last = head_newest.get(sid, -1)
            if ts > last:  # in order: newer than every row of its series here, so new
                newest[sid] = ts
                if part.keys is not None:
                    part.keys.add((sid, ts, mid))
            else:
                ident = (sid, ts, mid)
                if ident in part.head.key_set() or ident in part.batch_keys():
                    continue  # a duplicate (the store counts what was not inserted)
                part.keys.add(ident)  # type: ignore[union-attr]
            if ts < part.cut:
                part.late.append(len(part.ts))
            part.sid.append(sid)
            part.ts.append(ts)
            part.vol.append(vol)
            part.ids.append(mid)
        out.parts = list(parts.values())
        return out
