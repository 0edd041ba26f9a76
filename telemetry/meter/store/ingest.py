"""The embedded store's write loop: a batch of samples to per-partition columns of new rows.

This is the one place that touches every sample, so it does as little per
sample as Python allows: fields are read from the model's ``__dict__``, the
series id comes from a cache keyed by the identity fields, time partitions
and TTLs are resolved once per meter, and a message id is tested for being
derivable (so it need not be stored) only when it can be: a version-5 UUID
on a whole-millisecond UTC timestamp. Duplicates of rows the head holds, or
of rows earlier in the same batch, are dropped here; rows older than what
was sealed are left for the store to check against its chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone
from hashlib import sha1 as _sha1
from operator import itemgetter
from typing import Any, Callable

import orjson

from telemetry.meter.store.base import DAY_MS, SeriesRow, series_of
from telemetry.meter.statistics import from_ms
from telemetry.models import _NS, _VARIANT, Sample

_UTC = timezone.utc
_ZERO = timedelta(0)


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
    kept: dict[int, str] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)  # series -> newest time in this batch
    keys: set[tuple[Any, ...]] | None = None  # identities of the rows above, once one was not in order
    late: list[int] = field(default_factory=list)  # indices of rows before ``cut``

    def batch_keys(self) -> set[tuple[Any, ...]]:
        if self.keys is None:
            kept = self.kept
            self.keys = {(s, t, kept[i]) if i in kept else (s, t)
                         for i, (s, t) in enumerate(zip(self.sid, self.ts))}
        return self.keys


@dataclass(slots=True)
class Batch:
    parts: list[Part]
    new_series: dict[int, SeriesRow]
    expired: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class Known:
    """What the write loop caches of a series."""

    row: SeriesRow
    ttl: int
    derive: Any  # SHA-1 state after the constant prefix of the series' derived message ids
    suffix: bytes


_ID_PREFIX = _NS + b"sample\x1f"
_FIELDS = itemgetter("counter_name", "counter_type", "counter_unit", "resource_id", "project_id", "user_id", "source",
                     "resource_metadata", "timestamp", "message_id", "counter_volume")


class Splitter:
    """Per-store caches that outlive a batch: what is known of each series, by its identity fields."""

    def __init__(self, ttl_for: Callable[[str], int]) -> None:
        self.ttl_for = ttl_for
        self.series: dict[tuple[Any, ...], Known] = {}

    def clear(self) -> None:
        self.series.clear()

    def _learn(self, s: Sample) -> Known:
        row = series_of(s)
        prefix = f"{row.meter}\x1f{row.resource_id}\x1f".encode()
        return Known(row, self.ttl_for(row.meter), _sha1(_ID_PREFIX + prefix), f"\x1f{row.source}".encode())

    def split(self, samples: list[Sample], now_ms: int, partition: Callable[[int, int], tuple[Any, int]]) -> Batch:
        """``partition(ttl, day)`` -> (its ``Head``, its sealed cut)."""
        cache = self.series
        if len(cache) > 200_000:
            cache.clear()
        out = Batch([], {})
        parts: dict[tuple[int, int], Part] = {}
        floors: dict[int, int] = {}
        isos: dict[int, bytes] = {}
        dumps, sort_keys, fields = orjson.dumps, orjson.OPT_SORT_KEYS, _FIELDS
        new_series = out.new_series
        part: Part | None = None
        cur_ttl = cur_day = -1
        newest: dict[int, int] = {}
        head_newest: dict[int, int] = {}
        for s in samples:
            name, ctype, unit, rid, pid, uid, src, md, t, mid, vol = fields(s.__dict__)
            # ``_value_``, not the enum: Enum.__hash__ is Python code, a measurable share of this loop.
            k = cache.get((name, ctype._value_, unit, rid, pid, uid, src, dumps(md, option=sort_keys) if md else b""))
            if k is None:
                k = cache[(name, ctype._value_, unit, rid, pid, uid, src,
                           dumps(md, option=sort_keys) if md else b"")] = self._learn(s)
                new_series[k.row.id] = k.row
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
            kept: str | None = mid
            if mid[14:15] == "5" and not t.microsecond % 1000 and (t.tzinfo is _UTC or t.utcoffset() == _ZERO):
                iso = isos.get(ts)
                if iso is None:
                    iso = isos[ts] = from_ms(ts).isoformat().encode()
                h = k.derive.copy()
                h.update(iso + k.suffix)
                x = h.hexdigest()
                if mid == f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}":
                    kept = None
            last = newest.get(sid)
            if last is None:
                last = head_newest.get(sid, -1)
            if ts > last:  # in order: newer than every row of its series here, so new
                newest[sid] = ts
                if part.keys is not None:
                    part.keys.add((sid, ts) if kept is None else (sid, ts, kept))
            else:
                key = (sid, ts) if kept is None else (sid, ts, kept)
                if key in part.head.key_set() or key in part.batch_keys():
                    out.duplicates += 1
                    continue
                part.keys.add(key)  # type: ignore[union-attr]
            n = len(part.ts)
            if ts < part.cut:
                part.late.append(n)
            if kept is not None:
                part.kept[n] = kept
            part.sid.append(sid)
            part.ts.append(ts)
            part.vol.append(vol)
        out.parts = list(parts.values())
        return out
