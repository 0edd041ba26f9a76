"""Alarm windows filled from the sample store when the engine starts.

Without it a started (or restarted, or new) server would judge its alarms
on windows holding only what arrived since it started: it would wait a
whole window before any judgement, and an alarm whose data had all arrived
just before the start could not fire. The store has the same metered
samples the engine reads from the bus, so each meter's samples over its
longest window are folded in once, before the engine consumes anything;
their ids are kept so that the bus bringing some of them again does not
count them twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from telemetry.meter.query import SampleQuery
from telemetry.meter.store.base import SampleStore, stored_message_id
from telemetry.rules.evaluator import Engine

log = logging.getLogger(__name__)

#: Samples read back per meter at most: past that the window fills from the bus as usual.
MAX_ROWS = 2_000_000


def spans(engine: Engine) -> dict[str, tuple[float, list[str]]]:
    """Per meter: the longest window any unit needs (seconds) and the alarms reading it."""
    out: dict[str, tuple[float, list[str]]] = {}
    acc: dict[str, float] = defaultdict(float)
    owners: dict[str, list[str]] = defaultdict(list)
    for aid, units in engine.units.items():
        for u in units:
            meter = u.rule.meter_name
            acc[meter] = max(acc[meter], float(u.period * (u.n + 1)))
            owners[meter].append(aid)
    for meter, span in acc.items():
        out[meter] = (span, owners[meter])
    return out


async def backfill(engine: Engine, store: SampleStore, now: float) -> tuple[set[str], float]:
    """Fold each meter's recent samples into the windows; returns their ids and the longest span."""
    ids: set[str] = set()
    longest = 0.0
    for meter, (span, owners) in spans(engine).items():
        q = SampleQuery(meter=meter)
        q.lo, q.hi = int((now - span) * 1000), int(now * 1000) + 1
        rows = await asyncio.to_thread(store.samples_sync, q, MAX_ROWS)
        for i, (series, row) in enumerate(rows, 1):
            mid = stored_message_id(row, series)
            ids.add(mid)
            engine.fold({"counter_name": series.meter, "counter_type": series.counter_type,
                         "counter_unit": series.counter_unit, "counter_volume": row.volume,
                         "resource_id": series.resource_id, "project_id": series.project_id,
                         "user_id": series.user_id, "source": series.source,
                         "resource_metadata": series.metadata, "message_id": mid, "ts": row.ts / 1000}, row.ts / 1000)
            if i % 5000 == 0:
                await asyncio.sleep(0)  # the API and health checks answer meanwhile
        if len(rows) < MAX_ROWS:  # the whole window came back: it is as good as watched
            for aid in owners:
                engine.watched_since(aid, now - span)
        longest = max(longest, span)
        if rows:
            log.info("rules: %d samples of %s from the last %.0fs folded into the windows", len(rows), meter, span)
    return ids, longest
