"""``build_statistics`` (written for per-row cost) against a straightforward reference implementation."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from telemetry.meter.statistics import AGGREGATES, STANDARD, Partial, Statistics, build_statistics

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Groups = dict[int, tuple[dict[str, Any] | None, str]]
Partials = dict[tuple[int, int], Partial]


def reference(partials: Partials, groups: Groups, origin: int | None, period: int | None,
              aggregates: list[str], start: int | None, end: int | None) -> list[Statistics]:
    """The obvious way: per row, ``Partial.value`` for each aggregate and ``model_construct``."""
    funcs = aggregates or list(STANDARD)
    rows = []
    for (bucket, gid), p in sorted(partials.items(), key=lambda kv: (kv[0][0], str(groups[kv[0][1]][0]))):
        if not p.count:
            continue
        if period:
            assert origin is not None
            pstart, pend, plen = origin + bucket * period, origin + (bucket + 1) * period, period // 1000
        else:
            pstart, pend, plen = p.tmin, p.tmax, 0
        dstart = p.tmin if start is None else max(p.tmin, start)
        dend = p.tmax if end is None else min(p.tmax, end)
        values = {f: p.value(f) for f in funcs}
        groupby, unit = groups[gid]
        fields: dict[str, Any] = dict.fromkeys(STANDARD)
        fields.update({f: values[f] for f in STANDARD if f in values})
        if "count" in values:
            fields["count"] = int(values["count"])
        rows.append(Statistics.model_construct(
            groupby=groupby, unit=unit, **fields, aggregate=values if aggregates else None,
            duration=max(0.0, (dend - dstart) / 1000), duration_start=EPOCH + timedelta(milliseconds=dstart),
            duration_end=EPOCH + timedelta(milliseconds=dend), period=plen,
            period_start=EPOCH + timedelta(milliseconds=pstart),
            period_end=EPOCH + timedelta(milliseconds=pend)))
    return rows


def random_partials(rng: random.Random, origin: int, period: int | None, gids: list[int],
                    buckets: int) -> Partials:
    out: Partials = {}
    for b in rng.sample(range(buckets), k=max(1, buckets * 2 // 3)):  # gaps, and not in order
        for gid in gids:
            if rng.random() < 0.2:
                continue
            lo = origin + b * (period or 3_600_000)
            n = rng.choice([0, 1, 1, 2, 7])
            ts = sorted(rng.randrange(lo, lo + (period or 3_600_000)) for _ in range(n)) or [lo]
            if rng.random() < 0.2:
                ts[0] = lo  # a sample on the bucket's start
            vols = [rng.uniform(-50, 150) for _ in range(n)] or [0.0]
            sumsq = sum(v * v for v in vols)
            out[(b, gid)] = Partial(n, sum(vols), sumsq, min(vols), max(vols), ts[0], ts[-1])
    out[(0, gids[-1])] = Partial(3, 6.0, 14.0, 1.0, 3.0, origin + 1, origin + 2)  # never an empty answer
    return out


GROUPS: list[Groups] = [
    {0: (None, "%")},
    {0: ({"resource_id": "res-b"}, "%"), 1: ({"resource_id": "res-a"}, "%"),
     2: ({"resource_id": "res-c"}, "B")},
]
AGGS = [[], ["avg", "min", "max", "count"], ["stddev"], ["count", "sum", "stddev", "max"], list(AGGREGATES)]


@pytest.mark.parametrize("groups", GROUPS)
@pytest.mark.parametrize("period", [None, 60_000, 1_800_000, 7_200_000])  # 2 h: offsets past the tables
@pytest.mark.parametrize("aggregates", AGGS)
def test_rows_equal_the_reference(groups: Groups, period: int | None, aggregates: list[str]) -> None:
    rng = random.Random(f"{len(groups)}-{period}-{aggregates}")
    origin = 1_700_000_000_123
    partials = random_partials(rng, origin, period, list(groups), 40 if period else 1)
    ends = [(None, None), (origin, origin + 40 * (period or 3_600_000)),  # clamped durations:
            (origin + 7_777, origin + 39 * (period or 3_600_000) - 5_555)]  # first and last buckets cut
    for start, end in ends:
        got = build_statistics(partials, groups, origin if period else None, period, aggregates, start, end)
        want = reference(partials, groups, origin if period else None, period, aggregates, start, end)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            assert list(g.__dict__.items()) == list(w.__dict__.items())  # values and key order
            assert [type(v) for v in g.__dict__.values()] == [type(v) for v in w.__dict__.values()]
            if g.aggregate is not None:
                assert list(g.aggregate) == list(w.aggregate)  # type: ignore[arg-type]
            assert g.duration_start.tzinfo is timezone.utc  # type: ignore[union-attr]
            assert g.model_dump(mode="json") == w.model_dump(mode="json") and g == w


def test_times_before_the_epoch_and_far_ahead() -> None:
    groups: Groups = {0: (None, "")}
    for origin in (-86_400_000 * 400 + 17, 1000 << 34):
        partials = {(0, 0): Partial(2, 3.0, 5.0, 1.0, 2.0, origin + 5, origin + 59_001),
                    (2, 0): Partial(1, 4.0, 16.0, 4.0, 4.0, origin + 120_000, origin + 120_000)}
        for period in (None, 60_000):
            got = build_statistics(partials, groups, origin, period, ["avg", "stddev"], None, None)
            assert got == reference(partials, groups, origin, period, ["avg", "stddev"], None, None)


def test_rows_are_independent_models() -> None:
    partials = {(b, 0): Partial(1, float(b), float(b * b), float(b), float(b), b * 60_000, b * 60_000)
                for b in range(3)}
    rows = build_statistics(partials, {0: (None, "%")}, 0, 60_000, ["max"], None, None)
    rows[0].max = 9.0
    rows[0].aggregate["max"] = 9.0  # type: ignore[index]
    assert (rows[1].max, rows[1].aggregate) == (1.0, {"max": 1.0})
    assert rows[0].model_fields_set == rows[1].model_fields_set == set(Statistics.model_fields)
    copy = rows[2].model_copy(update={"unit": "B"})
    assert copy.unit == "B" and rows[2].unit == "%" and copy.period_end == rows[2].period_end
    assert rows[1].period_start is rows[0].period_end  # shared, immutable
    assert rows[1].model_dump(mode="json")["period_start"] == "1970-01-01T00:01:00"
    assert math.isclose(rows[2].duration or 0.0, 0.0)


def test_an_unknown_aggregate_is_refused() -> None:
    with pytest.raises(ValueError, match="median"):
        build_statistics({}, {0: (None, "")}, 0, 60_000, ["median"], None, None)
