"""A batch of deliveries as a stage takes it in when every one was handed over in this process (the
memory bus's records, as their publishers built them): the records, and the counts by topic.

Apart from the stage (``telemetry.stage``) because every stage of the all-in-one runs it for every
record: plain, synchronous code that mypyc compiles (``telemetry._native``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telemetry.bus.base import Delivery

__all__ = ["handed_over"]


def handed_over(deliveries: Sequence[Delivery]) -> tuple[
        list[tuple[Delivery, Any]], dict[str, int], dict[str, int]] | None:
    """Each delivery with its record, the deliveries by topic and the redelivered ones by topic; None
    when one came as bytes (from a broker: the stage decodes each)."""
    good: list[tuple[Delivery, Any]] = []
    consumed: dict[str, int] = {}
    redelivered: dict[str, int] = {}
    topic, n = "", 0  # a batch is of one topic, mostly: counted in a run, not a lookup per record
    for d in deliveries:
        record = d.record
        if record is None:
            return None
        if d.topic != topic:
            if n:
                consumed[topic] = consumed.get(topic, 0) + n
            topic, n = d.topic, 0
        n += 1
        if d.redelivered:
            redelivered[topic] = redelivered.get(topic, 0) + 1
        good.append((d, record))
    if n:
        consumed[topic] = consumed.get(topic, 0) + n
    return good, consumed, redelivered
