"""A metric's measures at one granularity and aggregation method, computed from the sample store.

Gnocchi pre-computes every (granularity, method) of a metric's archive
policy in metricd workers; we compute them when read, from the same partials
Ceilometer statistics use: a granularity that is a whole number of minutes
(or hours) is answered from the per-minute (per-hour) roll-ups, any other
from raw samples. Methods a partial holds (mean, sum, min, max, count, std)
come from partials; ``first``, ``last``, ``median``, percentiles and every
``rate:`` method need the raw measures and read them. Gnocchi keeps only an
archive's last ``points`` buckets, counted back from the newest one; the
read keeps the same window, so both answer alike whatever the store still
holds (its own retention is ``store.ttl`` and ``store.rollups``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from telemetry.gnocchi.models import PERCENTILE
from telemetry.meter.statistics import Partial
from telemetry.meter.store.base import SampleStore

#: Methods answered from partial aggregates, and how.
PARTIAL_METHODS = {"mean": "avg", "sum": "sum", "min": "min", "max": "max", "count": "count", "std": "std"}
#: One timeseries: bucket start (epoch seconds) -> value.
Points = dict[float, float]


@dataclass(frozen=True)
class Window:
    """Bucket width and the read range ``[lo, hi)`` in ms, aligned to the width (None: open)."""

    granularity: float
    lo: int | None
    hi: int | None

    @classmethod
    def of(cls, granularity: float, start: float | None, stop: float | None) -> Window:
        g = int(round(granularity * 1000))
        lo = None if start is None else int(start * 1000) // g * g
        hi = None if stop is None else -(-int(stop * 1000) // g) * g
        return cls(granularity, lo, hi)

    @property
    def ms(self) -> int:
        return int(round(self.granularity * 1000))


def _from_partial(p: Partial, method: str) -> float:
    if method == "std":  # Gnocchi's std is the sample standard deviation (ddof=1): undefined for one point
        if p.count < 2:
            return math.nan
        mean = p.sum / p.count
        return math.sqrt(max(0.0, (p.sumsq - p.count * mean * mean) / (p.count - 1)))
    return p.value(PARTIAL_METHODS[method])


def _reduce(values: list[float], method: str) -> float:
    """``values`` in time order."""
    if method == "first":
        return values[0]
    if method == "last":
        return values[-1]
    arr = np.asarray(values, dtype=float)
    if method == "median":
        return float(np.median(arr))
    m = PERCENTILE.match(method)
    if m:
        return float(np.percentile(arr, int(m.group(1))))
    if method == "std":
        return float(np.std(arr, ddof=1)) if len(arr) > 1 else math.nan
    return {"mean": lambda: float(arr.mean()), "sum": lambda: float(arr.sum()), "min": lambda: float(arr.min()),
            "max": lambda: float(arr.max()), "count": lambda: float(len(arr))}[method]()


def read_series(store: SampleStore, sel: dict[int, int], method: str, window: Window) -> dict[int, Points]:
    """Per group id of ``sel`` (series id -> group: one group per metric), the buckets of ``method``."""
    g = window.ms
    out: dict[int, Points] = {gid: {} for gid in set(sel.values())}
    base = method[5:] if method.startswith("rate:") else method
    if not method.startswith("rate:") and base in PARTIAL_METHODS:
        for (bucket, gid), p in store.bucket_partials(sel, 0, g, window.lo, window.hi).items():
            v = _from_partial(p, base)
            if not math.isnan(v):
                out[gid][bucket * g / 1000] = v
        return out
    # Raw measures: a rate also needs the measure just before the window, to difference the first one.
    lo = None if window.lo is None or not method.startswith("rate:") else window.lo - 86_400_000
    rows = store.raw_rows(list(sel), lo, window.hi)
    series: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        series.setdefault(sel[r.series_id], []).append((r.ts, r.volume))
    for gid, pts in series.items():
        pts.sort()
        if method.startswith("rate:"):
            pts = [(t, v - pv) for (pt, pv), (t, v) in zip(pts, pts[1:])]
        buckets: dict[int, list[float]] = {}
        for t, v in pts:
            if window.lo is None or t >= window.lo:
                buckets.setdefault(t // g, []).append(v)
        out[gid] = {b * g / 1000: _reduce(vs, base) for b, vs in sorted(buckets.items())}
    return out


def keep_last(points: Points, granularity: float, count: int) -> Points:
    """The archive's retention: only the ``count`` buckets back from the newest one."""
    if not points:
        return points
    newest = max(points)
    oldest = newest - granularity * (count - 1)
    return {t: v for t, v in points.items() if t >= oldest}
