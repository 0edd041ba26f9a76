"""SQL text both backends share (they differ only in placeholders and DDL)."""

from __future__ import annotations

from typing import Any

from telemetry.meter.query import SQL_OPS, SampleQueryError
from telemetry.meter.store.base import Kind, hash64

SERIES_COLUMNS = ("id", "meter", "counter_type", "counter_unit", "resource_id", "project_id", "user_id",
                  "source", "metadata", "first_ts", "last_ts")


def sample_filters(terms: list[tuple[str, str, Any]], ph: str = "?") -> tuple[str, list[Any]]:
    """SQL for per-sample terms (volume, message id) on the raw table aliased ``s``."""
    sql, args = [], []
    for f, op, v in terms:
        if f == "counter_volume":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SampleQueryError(f"counter_volume needs a number, got {v!r}")
            sql.append(f"s.volume {SQL_OPS[op]} {ph}")
            args.append(float(v))
        elif f == "message_id":
            if op != "eq":
                raise SampleQueryError("message_id supports only op eq")
            sql.append(f"s.mid = {ph}")
            args.append(hash64(str(v).encode()))
    return "".join(f" AND {c}" for c in sql), args


def aggregate_select(kind: Kind, period: int | None, ph: str = "?") -> tuple[str, str]:
    """(select list, time column) for partial aggregates of raw rows ``s`` or roll-up rows ``r``."""
    if kind == "raw":
        t = "s.ts"
        # PostgreSQL raises on float underflow: a square below 1e-300 counts as the 0 it rounds to anyway.
        cols = ("count(*), sum(s.volume), sum(CASE WHEN abs(s.volume) < 1e-150 THEN 0 ELSE s.volume * s.volume END), "
                "min(s.volume), max(s.volume), "
                "min(s.ts), max(s.ts)")
    else:
        t = "r.bucket"
        cols = "sum(r.count), sum(r.sum), sum(r.sumsq), min(r.min), max(r.max), min(r.tmin), max(r.tmax)"
    bucket = f"(({t} - {ph}) / {ph})" if period else "0"
    return f"{bucket} AS b, {cols}", t
