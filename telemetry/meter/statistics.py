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
    """
    funcs = aggregates or list(STANDARD)
    for f in funcs:
        if f not in AGGREGATES:
            raise ValueError(f"aggregate.func {f!r} is not one of {', '.join(AGGREGATES)}")
    rank = {gid: str(g[0]) for gid, g in groups.items()}
    standard = [f for f in funcs if f in STANDARD]
    keep_aggregate = bool(aggregates)
    rows: list[Statistics] = []
    new, setattr_, fields_set = Statistics.__new__, object.__setattr__, _FIELDS_SET
    for (bucket, gid), p in sorted(partials.items(), key=lambda kv: (kv[0][0], rank[kv[0][1]])):
        if not p.count:
            continue
        groupby, unit = groups[gid]
        if period:
            assert origin is not None
            pstart = origin + bucket * period
            pend, plen = pstart + period, period // 1000
        else:
            pstart, pend, plen = p.tmin, p.tmax, 0
        dstart = p.tmin if start is None else max(p.tmin, start)
        dend = p.tmax if end is None else min(p.tmax, end)
        values = {f: p.value(f) for f in funcs}
        fields = {
            "groupby": groupby, "unit": unit, "min": None, "max": None, "avg": None, "sum": None, "count": None,
            "aggregate": values if keep_aggregate else None,
            "duration": max(0.0, (dend - dstart) / 1000), "duration_start": _EPOCH + timedelta(milliseconds=dstart),
            "duration_end": _EPOCH + timedelta(milliseconds=dend), "period": plen,
            "period_start": _EPOCH + timedelta(milliseconds=pstart), "period_end": _EPOCH + timedelta(milliseconds=pend),
        }
        for f in standard:
            fields[f] = values[f]
        if "count" in values:
            fields["count"] = int(values["count"])
        # What model_construct does, minus its per-field default resolution (most of a 1,440-bucket answer's
        # time): every value here is already of its field's type.
        row = new(Statistics)
        setattr_(row, "__dict__", fields)
        setattr_(row, "__pydantic_fields_set__", set(fields_set))
        setattr_(row, "__pydantic_extra__", None)
        setattr_(row, "__pydantic_private__", None)
        rows.append(row)
    return rows


_FIELDS_SET = frozenset(Statistics.model_fields)


