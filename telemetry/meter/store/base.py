"""The sample store interface and what every backend shares.

Layout, the same on both backends:
- a *series* catalogue: one row per distinct (meter, type, unit, resource,
  project, user, source, metadata). Its id is a 64-bit hash of that identity,
  so a writer never has to look an id up before inserting samples;
- raw samples ``(series_id, ts_ms, mid, volume, recorded_ms, msgid)`` keyed
  by (series, time, hash of message_id) — a redelivered message hits the key
  and is ignored, and only rows actually inserted feed the roll-ups, so
  redelivery never double-counts either;
- per-minute and per-hour roll-ups of partial aggregates per series.
All three are partitioned by day (raw samples additionally by TTL class), so
expiry drops whole partitions and the disk space comes back at once. (The
embedded backend also packs finished hours of raw rows into compressed chunks
and keeps per-meter roll-ups: see ``sqlite.py``.)
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from fnmatch import fnmatchcase
from collections.abc import Sequence
from typing import Any, Literal

import orjson

from telemetry.meter.query import GROUPBY_FIELDS, SampleQueryError, SampleQuery, metadata_value
from telemetry.meter.statistics import Partial, Statistics, build_statistics, from_ms
from telemetry.models import Sample, id_of_key

Kind = Literal["raw", "m1", "h1"]
DAY_MS = 86_400_000
GRANULARITY = {"m1": 60_000, "h1": 3_600_000}
_ZERO = timedelta(0)
EPOCH_DAY = date(1970, 1, 1)
#: A stored sample as backends receive it: (series_id, ts ms, mid, volume, recorded ms, msgid or None).
RowTuple = tuple[int, int, int, float, int, "str | None"]


def hash64(text: bytes) -> int:
    """A signed 64-bit hash (fits SQLite INTEGER and PostgreSQL bigint)."""
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


def day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).date()


def day_start_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)


@dataclass(slots=True)
class SeriesRow:
    id: int
    meter: str
    counter_type: str
    counter_unit: str
    resource_id: str
    project_id: str | None
    user_id: str | None
    source: str
    metadata: dict[str, Any]
    first_ts: int = 0
    last_ts: int = 0


def series_row(r: Sequence[Any]) -> SeriesRow:
    """A row of ``SELECT {SERIES_COLUMNS} FROM series``, its metadata decoded."""
    return SeriesRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], orjson.loads(r[8]), r[9], r[10])


@dataclass(slots=True)
class SampleRow:
    """A raw sample as stored, before it meets its series again."""

    series_id: int
    ts: int
    mid: int
    volume: float
    recorded: int
    msgid: str | None  # None when the id is derivable from the sample itself


@dataclass(slots=True)
class Partition:
    kind: Kind
    day: date
    ttl: int | None = None  # raw partitions: the TTL class (seconds) they were written under
    size: int = 0

    @property
    def end_ms(self) -> int:
        return day_start_ms(self.day) + DAY_MS


@dataclass
class WriteResult:
    inserted: int = 0
    duplicates: int = 0
    expired: int = 0


def series_of(s: Sample) -> SeriesRow:
    ident = orjson.dumps(
        [s.counter_name, s.counter_type.value, s.counter_unit, s.resource_id, s.project_id, s.user_id,
         s.source, s.resource_metadata], option=orjson.OPT_SORT_KEYS,
    )
    return SeriesRow(hash64(ident), s.counter_name, s.counter_type.value, s.counter_unit, s.resource_id,
                     s.project_id, s.user_id, s.source, s.resource_metadata)


def derived_sample_id(meter: str, resource_id: str, iso: str, source: str) -> str:
    """``Sample._fill_id``'s id (``derived_id("sample", ...)``), built through ``id_of_key``, which
    formats the uuid5 from the SHA-1 digest without a ``uuid.UUID`` (the write path runs this per sample)."""
    return id_of_key(f"sample\x1f{meter}\x1f{resource_id}\x1f{iso}\x1f{source}".encode())


def kept_message_id(s: Sample) -> str | None:
    """The id to store: None when it is the one derivable again from the stored (ms) sample."""
    ts = s.timestamp
    if ts.microsecond % 1000 or (ts.tzinfo is not timezone.utc and ts.utcoffset() != _ZERO):
        return s.message_id  # the stored ms timestamp could not reproduce it
    derived = derived_sample_id(s.counter_name, s.resource_id, ts.isoformat(), s.source)
    return None if s.message_id == derived else s.message_id


def stored_message_id(row: SampleRow, s: SeriesRow) -> str:
    if row.msgid is not None:
        return row.msgid
    return derived_sample_id(s.meter, s.resource_id, from_ms(row.ts).isoformat(), s.source)


class TtlPolicy:
    """The TTL class of a meter: the first matching ``store.ttl.meters`` pattern, else the default."""

    def __init__(self, default: float, meters: dict[str, float] | None = None) -> None:
        self.default = int(default)
        self.meters = {k: int(v) for k, v in (meters or {}).items()}

    def ttl_for(self, meter: str) -> int:
        for pattern, ttl in self.meters.items():
            if fnmatchcase(meter, pattern):
                return ttl
        return self.default


class SampleStore(abc.ABC):
    """Backend primitives are sync and run under ``self.lock``; the async methods run them in a thread."""

    def __init__(self, ttl: TtlPolicy, rollup_ttl: dict[str, float] | None = None) -> None:
        self.ttl = ttl
        self.rollup_ttl = {"m1": 30 * 86400, "h1": 400 * 86400, **(rollup_ttl or {})}
        self.lock = threading.RLock()
        self._series_cache: dict[tuple[Any, ...], SeriesRow] = {}
        self._ttl_cache: dict[str, int] = {}

    # ---- backend primitives -------------------------------------------------------------
    def _write(self, series: list[SeriesRow], rows: dict[tuple[int, date], list[RowTuple]]) -> int:
        """Upsert series, insert rows grouped by (ttl class, day), feed roll-ups with what was new.

        Used by the shared ``write``; a backend with its own write path (the embedded one) overrides
        ``write`` instead."""
        raise NotImplementedError

    @abc.abstractmethod
    def _series(self, equalities: dict[str, str]) -> list[SeriesRow]:
        """Series whose columns equal ``equalities`` (keys from query.SERIES_FIELDS)."""

    @abc.abstractmethod
    def _aggregate(self, kind: Kind, sel: dict[int, int], origin: int, period: int | None,
                   lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
                   meter: str | None = None) -> dict[tuple[int, int], Partial]:
        """Partials keyed by (bucket, group id) over series ``sel`` (series id -> group id).

        ``meter`` is set when ``sel`` is every series of that meter in one group: a backend with
        per-meter roll-ups may answer from those instead."""

    @abc.abstractmethod
    def _fetch(self, sids: list[int], lo: int | None, hi: int | None, terms: list[tuple[str, str, Any]],
               limit: int | None) -> list[SampleRow]:
        """Raw samples of these series, newest first."""

    @abc.abstractmethod
    def partitions(self) -> list[Partition]:
        """Every partition with its size on disk."""

    @abc.abstractmethod
    def drop(self, p: Partition) -> None:
        """Drop a whole partition (unlink / DROP TABLE): its space returns at once."""

    @abc.abstractmethod
    def forget_series(self, before_ms: int) -> int:
        """Remove series last seen before ``before_ms`` (nothing references them any more)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return type(self).__name__

    def maintain(self, now: datetime | None = None) -> None:  # noqa: B027 - optional hook, most backends need none
        """Periodic housekeeping besides expiry (the embedded backend seals raw rows into chunks)."""

    def free_fraction(self) -> float | None:
        """Free share of the disk holding the data, or None when the store cannot see it."""
        return None

    # ---- shared logic ---------------------------------------------------------------------
    def write(self, samples: list[Sample], now: datetime | None = None) -> WriteResult:
        """Store a batch; the hot path of ingest, so it keeps per-sample work to plain tuples and caches."""
        now_ms = int((now or datetime.now(timezone.utc)).timestamp() * 1000)
        result = WriteResult()
        cache, ttls = self._series_cache, self._ttl_cache
        if len(cache) > 200_000:
            cache.clear()
        series: dict[int, SeriesRow] = {}
        rows: dict[tuple[int, int], dict[tuple[int, int, int], RowTuple]] = {}
        dumps, sort_keys = orjson.dumps, orjson.OPT_SORT_KEYS
        for s in samples:
            md = s.resource_metadata
            # ``_value_``, not the enum: Enum.__hash__ is Python code, a measurable share of this loop.
            key = (s.counter_name, s.counter_type._value_, s.counter_unit, s.resource_id, s.project_id, s.user_id,
                   s.source, dumps(md, option=sort_keys) if md else b"")
            sr = cache.get(key)
            if sr is None:
                sr = cache[key] = series_of(s)
            ts = int(round(s.timestamp.timestamp() * 1000))
            ttl = ttls.get(s.counter_name)
            if ttl is None:
                ttl = ttls[s.counter_name] = self.ttl.ttl_for(s.counter_name)
            day = ts // DAY_MS
            if (day + 1) * DAY_MS <= now_ms - ttl * 1000:
                result.expired += 1  # its partition is already gone: writing would resurrect it
                continue
            sid = sr.id
            known = series.get(sid)
            if known is None:
                known = series[sid] = SeriesRow(sid, sr.meter, sr.counter_type, sr.counter_unit, sr.resource_id,
                                                sr.project_id, sr.user_id, sr.source, sr.metadata, ts, ts)
            elif ts < known.first_ts:
                known.first_ts = ts
            elif ts > known.last_ts:
                known.last_ts = ts
            mid = hash64(s.message_id.encode())
            part = rows.get((ttl, day))
            if part is None:
                part = rows[(ttl, day)] = {}
            part[(sid, ts, mid)] = (sid, ts, mid, s.counter_volume, now_ms, kept_message_id(s))
        batch = {(ttl, EPOCH_DAY + timedelta(days=day)): list(v.values()) for (ttl, day), v in rows.items()}
        with self.lock:
            result.inserted = self._write(list(series.values()), batch) if batch else 0
        result.duplicates = len(samples) - result.expired - result.inserted
        return result

    def select(self, q: SampleQuery) -> list[SeriesRow]:
        with self.lock:
            candidates = self._series(q.equalities())
        return [s for s in candidates if q.matches_series(s)]

    def statistics_sync(self, q: SampleQuery, period: int | None = None, groupby: list[str] | None = None,
                        aggregates: list[str] | None = None, force: Kind | None = None) -> list[Statistics]:
        from telemetry.meter.rollups import choose_source

        groupby = [g if not g.startswith("resource_metadata.") else "metadata." + g[18:] for g in groupby or []]
        for g in groupby:
            if g not in GROUPBY_FIELDS and not g.startswith("metadata."):
                raise SampleQueryError(f"groupby {g!r} is not supported (resource_id, project_id, user_id, "
                                 "source or resource_metadata.<field>)")
        if period is not None and period <= 0:
            raise SampleQueryError("period must be a positive number of seconds")
        series = self.select(q)
        if not series:
            return []
        sel: dict[int, int] = {}
        groups: dict[int, tuple[dict[str, Any] | None, str]] = {}
        keys: dict[tuple[Any, ...], int] = {}
        for s in series:
            key = tuple(metadata_value(s.metadata, g[9:]) if g.startswith("metadata.") else getattr(s, g)
                        for g in groupby)
            gid = keys.setdefault(tuple(str(k) for k in key), len(keys))
            sel[s.id] = gid
            groups.setdefault(gid, ({("resource_metadata." + g[9:] if g.startswith("metadata.") else g): v
                                     for g, v in zip(groupby, key)} if groupby else None, s.counter_unit))
        period_ms = period * 1000 if period else None
        whole_meter = q.meter if not groupby and q.series_terms == [("meter", "eq", q.meter)] else None
        with self.lock:
            origin = q.start
            if period_ms and origin is None:
                # Ceilometer starts the buckets at the first sample when no start is given.
                whole = self._aggregate(choose_source(q, None, None, force), sel, 0, None, q.lo, q.hi,
                                        q.sample_terms, whole_meter)
                if not whole:
                    return []
                origin = min(p.tmin for p in whole.values())
            kind = choose_source(q, period_ms, origin, force)
            partials = self._aggregate(kind, sel, origin or 0, period_ms, q.lo, q.hi, q.sample_terms, whole_meter)
        return build_statistics(partials, groups, origin, period_ms, aggregates or [], q.start, q.end)

    def bucket_partials(self, sel: dict[int, int], origin: int, period_ms: int, lo: int | None,
                        hi: int | None) -> dict[tuple[int, int], Partial]:
        """Partials per (bucket index, group id) of series ``sel`` (series id -> group id), buckets of
        ``period_ms`` from ``origin``, over ``[lo, hi)``: from the coarsest roll-up that is exact, else raw rows.

        The Gnocchi API reads a metric's measures at a granularity through this."""
        if not sel:
            return {}
        kind: Kind = "raw"
        for k in ("h1", "m1"):
            g = GRANULARITY[k]
            if all(v is None or v % g == 0 for v in (period_ms, origin, lo, hi)):
                kind = k
                break
        with self.lock:
            return self._aggregate(kind, sel, origin, period_ms, lo, hi, [])

    def raw_rows(self, sids: list[int], lo: int | None, hi: int | None) -> list[SampleRow]:
        """Every raw sample of these series in ``[lo, hi)``, newest first (methods no partial answers)."""
        with self.lock:
            return self._fetch(sids, lo, hi, [], None)

    def samples_sync(self, q: SampleQuery, limit: int | None = None) -> list[tuple[SeriesRow, SampleRow]]:
        series = {s.id: s for s in self.select(q)}
        if not series:
            return []
        with self.lock:
            rows = self._fetch(list(series), q.lo, q.hi, q.sample_terms, limit)
        return [(series[r.series_id], r) for r in rows]

    # ---- async face (the API and the rule engine) ---------------------------------------------
    async def statistics(self, meter: str, query: SampleQuery | None = None, period: int | None = None,
                         groupby: list[str] | None = None, aggregates: list[str] | None = None,
                         start: datetime | None = None, end: datetime | None = None) -> list[Statistics]:
        """Ceilometer statistics of ``meter``; ``start``/``end`` add ``timestamp ge/lt`` terms."""
        from telemetry.meter.query import QueryTerm

        q = SampleQuery(meter=meter)
        for t in (query.series_terms + query.sample_terms) if query else []:
            (q.sample_terms if t[0] in ("counter_volume", "message_id") else q.series_terms).append(t)
        if query:
            q.lo, q.hi, q.start, q.end = query.lo, query.hi, query.start, query.end
        if start is not None:
            q.add(QueryTerm(field="timestamp", op="ge", value=start))
        if end is not None:
            q.add(QueryTerm(field="timestamp", op="lt", value=end))
        return await asyncio.to_thread(self.statistics_sync, q, period, groupby, aggregates)

    async def record(self, samples: list[Sample]) -> WriteResult:
        return await asyncio.to_thread(self.write, samples)

    async def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(func, *args, **kwargs)


def days_between(lo: int | None, hi: int | None, available: list[date]) -> list[date]:
    first = day_of(lo) if lo is not None else None
    last = day_of(hi - 1) if hi is not None else None
    return [d for d in available if (first is None or d >= first) and (last is None or d <= last)]
