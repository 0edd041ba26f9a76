"""What the parse stage makes of a part's results: the events to publish (with their keys, or encoded for a
broker), the entries to dead-letter with their reasons, and the counts by outcome and type.

Apart from the stage (``stage``) because it runs once per log line on the daemon's core: plain,
synchronous code that mypyc compiles (``telemetry._native``); the stage awaits the bus, and stays Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telemetry.bus.base import NO_HEADERS, Delivery, OutMessage
from telemetry.parse.parser import outcome_of

__all__ = ["Sorted", "sort_part"]


class Sorted:
    """A batch's results as they leave the stage: what each part publishes is returned by ``sort_part``;
    these gather over the parts."""

    def __init__(self) -> None:
        #: Entries that became events, by (outcome, type).
        self.counts: dict[tuple[str, str], int] = {}
        #: Entries a drop step discarded, by type.
        self.dropped: dict[str, int] = {}
        #: Entries that could not become events, with the reason.
        self.bad: list[tuple[Delivery, str]] = []


def sort_part(records: Sequence[tuple[Delivery, Any]], results: Sequence[Any], into: Sorted
              ) -> tuple[list[OutMessage], list[dict[str, Any]], list[bytes | None]]:
    """One part's results (a worker's, in the order of ``records``): the messages encoded for a broker, or
    the event dicts and their bus keys for the bus in this process; the rest counted into ``into``."""
    out: list[OutMessage] = []
    events: list[dict[str, Any]] = []
    keys: list[bytes | None] = []
    counts, bad = into.counts, into.bad
    last_host, last_key = "", None  # one host per batch, mostly: its key encoded once
    for (delivery, raw), ev in zip(records, results):
        if isinstance(ev, dict):
            events.append(ev)
            host = ev["host"]
            if host != last_host:
                last_host, last_key = host, host.encode() or None
            keys.append(last_key if host else None)
            key = (outcome_of(ev["tags"]), ev["type"] or getattr(raw, "type", "") or "none")
            counts[key] = counts.get(key, 0) + 1
        elif isinstance(ev, tuple):
            if len(ev) == 1:  # a drop step
                dropped = ev[0] or "none"
                into.dropped[dropped] = into.dropped.get(dropped, 0) + 1
                continue
            value, host, type_, outcome = ev  # encoded for the broker
            out.append(OutMessage(value, host.encode() or None, NO_HEADERS, None))
            key = (outcome, type_ or getattr(raw, "type", "") or "none")
            counts[key] = counts.get(key, 0) + 1
        else:
            bad.append((delivery, str(ev)))  # the reason it could not become an event
    return out, events, keys
