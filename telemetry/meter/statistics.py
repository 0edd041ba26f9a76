"""Ceilometer v2 statistics from partial aggregates.

Every backend and every source (raw samples or roll-ups) reduces to the same
partial aggregate per (period bucket, group): count, sum, sum of squares,
min, max and the first and last sample times. Merging partials is exact for
all of them, which is what lets roll-ups answer with the same results as raw
samples. ``stddev`` is the population standard deviation, as Ceilometer's
SQL driver computed it (``stddev_pop``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, field_serializer

STANDARD = ("max", "min", "avg", "sum", "count")
AGGREGATES = STANDARD + ("stddev",)


@dataclass(slots=True)
class Partial:
    count: int
    sum: float
    sumsq: float
    min: float
    max: float
    tmin: int  # ms
    tmax: int  # ms

    def merge(self, o: Partial) -> None:
        self.count += o.count
        self.sum += o.sum
        self.sumsq += o.sumsq
        self.min = min(self.min, o.min)
        self.max = max(self.max, o.max)
        self.tmin = min(self.tmin, o.tmin)
        self.tmax = max(self.tmax, o.tmax)

    def value(self, func: str) -> float:
        if func == "count":
            return self.count
        if func == "sum":
            return self.sum
        if func == "min":
            return self.min
        if func == "max":
            return self.max
        if func == "avg":
            return self.sum / self.count
        if func == "stddev":
            mean = self.sum / self.count
            return math.sqrt(max(0.0, self.sumsq / self.count - mean * mean))
        raise ValueError(f"unknown aggregate {func!r}")


def merge_into(acc: dict[Any, Partial], key: Any, p: Partial) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = Partial(p.count, p.sum, p.sumsq, p.min, p.max, p.tmin, p.tmax)
    else:
        cur.merge(p)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
#: An offset below an hour as the sum of two of these (~70 ns), not ``_MS * offset`` (~180: long arithmetic).
_SECONDS = [timedelta(seconds=s) for s in range(3600)]
_MILLIS = [timedelta(milliseconds=m) for m in range(1000)]
_TABLED_MS = 3_600_000
#: Past any time in milliseconds (year 146,000,000): an open end of the query window.
_UNBOUNDED_MS = 1 << 62
_ZERO = timedelta(0)


def ceilometer_time(dt: datetime | None) -> str | None:
    """Ceilometer prints naive UTC ISO 8601 (``2013-08-19T09:45:18.373000``); clients parse that."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat()


class Statistics(BaseModel):
    """One row of ``GET /v2/meters/{name}/statistics``, field for field as Ceilometer returns it."""

    model_config = ConfigDict(extra="forbid")

    groupby: dict[str, Any] | None = None
    unit: str = ""
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    sum: float | None = None
    count: int | None = None
    aggregate: dict[str, float] | None = None
    duration: float | None = None
    duration_start: datetime | None = None
    duration_end: datetime | None = None
    period: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None

    @field_serializer("duration_start", "duration_end", "period_start", "period_end")
    def _ts(self, v: datetime | None) -> str | None:
        return ceilometer_time(v)


def build_statistics(
    partials: dict[tuple[int, int], Partial],
    groups: dict[int, tuple[dict[str, Any] | None, str]],
    origin: int | None,
    period: int | None,
    aggregates: list[str],
    start: int | None,
    end: int | None,
) -> list[Statistics]:
    """Rows from partials keyed by (bucket, group id); ``groups`` maps a group id to (groupby, unit).

    Without a period there is one bucket spanning the data (``period`` 0,
    period start/end = first/last sample), as in Ceilometer. Durations are
    clamped to the queried range, as Ceilometer's API does.

    A day in minutes is 1,440 rows and query A's budget is a few ms, so the
    loop is written for per-row cost: aggregates inline instead of through
    ``Partial.value``; dicts copied from per-query templates (cheaper than
    building them, and they keep the key order); datetimes made by adding an
    offset to the bucket's start (datetime + timedelta is ~30 ns; making the
    timedelta from a number is the cost, hence the tables), a bucket's end
    reused as the next one's start. Datetimes are immutable: rows sharing one
    cannot tell.
    """
    funcs = aggregates or list(STANDARD)
    for f in funcs:
        if f not in AGGREGATES:
            raise ValueError(f"aggregate.func {f!r} is not one of {', '.join(AGGREGATES)}")
    w_max, w_min, w_avg, w_sum, w_count, w_stddev = (f in funcs for f in AGGREGATES)
    aggregate_template = dict.fromkeys(funcs)  # the ``aggregate`` dict, in the order asked for
    keep_aggregate = bool(aggregates)
    plen = period // 1000 if period else 0
    row_template = {**dict.fromkeys(Statistics.model_fields), "period": plen}
    templates = {gid: {**row_template, "groupby": groupby, "unit": unit}
                 for gid, (groupby, unit) in groups.items()}
    if len(groups) == 1:
        keys = sorted(partials)  # one group id: (bucket, gid) sorts by bucket
    else:
        rank = {gid: str(g[0]) for gid, g in groups.items()}
        keys = sorted(partials, key=lambda k: (k[0], rank[k[1]]))
    lo = start if start is not None else -_UNBOUNDED_MS  # ints throughout: offsets index the tables below
    hi = end if end is not None else _UNBOUNDED_MS
    step = _MS * period if period else _ZERO
    ms, sqrt, seconds, millis = _MS, math.sqrt, _SECONDS, _MILLIS
    rows: list[Statistics] = []
    append, new, setattr_, fields_set = rows.append, Statistics.__new__, object.__setattr__, _ALL_SET
    last_bucket: int | None = None  # the bucket of the previous row
    next_bucket: int | None = None  # the one after it, which starts where the previous row ended
    pstart = pend = 0
    ps_dt = pe_dt = _EPOCH
    for key in keys:
        p = partials[key]
        count = p.count
        if not count:
            continue
        bucket, gid = key
        tmin, tmax = p.tmin, p.tmax
        if not period:
            pstart, pend = tmin, tmax
            ps_dt = _EPOCH + ms * tmin
            pe_dt = ps_dt + ms * (tmax - tmin)
        elif bucket != last_bucket:  # the groups of one bucket share its datetimes
            assert origin is not None
            pstart = origin + bucket * period
            ps_dt = pe_dt if bucket == next_bucket else _EPOCH + ms * pstart
            pend = pstart + period
            pe_dt = ps_dt + step
            last_bucket, next_bucket = bucket, bucket + 1
        dstart = tmin if tmin > lo else lo
        dend = tmax if tmax < hi else hi
        off = dstart - pstart
        if not off:
            ds_dt = ps_dt
        elif 0 < off < _TABLED_MS:
            ds_dt = ps_dt + (seconds[off // 1000] + millis[off % 1000])
        else:
            ds_dt = ps_dt + ms * off
        off = dend - dstart
        if not off:
            de_dt = ds_dt
        elif dend == pend:
            de_dt = pe_dt
        elif 0 < off < _TABLED_MS:
            de_dt = ds_dt + (seconds[off // 1000] + millis[off % 1000])
        else:
            de_dt = ds_dt + ms * off
        duration = (dend - dstart) / 1000
        total, vmin, vmax = p.sum, p.min, p.max
        avg = total / count
        fields = templates[gid].copy()
        aggregate = aggregate_template.copy()
        if w_max:
            fields["max"] = aggregate["max"] = vmax
        if w_min:
            fields["min"] = aggregate["min"] = vmin
        if w_avg:
            fields["avg"] = aggregate["avg"] = avg
        if w_sum:
            fields["sum"] = aggregate["sum"] = total
        if w_count:
            aggregate["count"] = count
            fields["count"] = int(count)
        if w_stddev:
            aggregate["stddev"] = sqrt(max(0.0, p.sumsq / count - avg * avg))
        if keep_aggregate:
            fields["aggregate"] = aggregate
        fields["duration"] = duration if duration > 0 else 0.0
        fields["duration_start"], fields["duration_end"] = ds_dt, de_dt
        fields["period_start"], fields["period_end"] = ps_dt, pe_dt
        # What model_construct does, minus its per-field defaults: every value is of its field's type.
        stat = new(Statistics)
        setattr_(stat, "__dict__", fields)
        setattr_(stat, "__pydantic_fields_set__", fields_set)
        setattr_(stat, "__pydantic_extra__", None)
        setattr_(stat, "__pydantic_private__", None)
        append(stat)
    return rows


#: Every field is set, so one set serves all rows: pydantic only ever adds a field name to it (on
#: assignment: a no-op here) and copies it before changing anything else (``model_copy``).
_ALL_SET = set(Statistics.model_fields)
