"""The at-least-once loop every log sink shares.

A sink reads the ``events`` topic in a consumer group of its own, so it sees
every event the store sees, and acknowledges a batch only once the receiver
took each event of it: accepted, already held (a redelivery), or refused
alone. Refused events are dead-lettered with the receiver's reason; events
the receiver could not take now (429, 5xx, unreachable) are sent again with
backoff, and if they still are not taken the batch goes back to the bus. The
stage then waits and tries again, holding the events back rather than losing
them, while the bus keeps the rest (backpressure).

Sinks are idempotent on the event id, which redelivery keeps: Elasticsearch
``create`` with ``_id`` answers 409 for a document it holds, Loki drops an
entry equal to one it holds (same stream, time and line).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from prometheus_client import Counter, Histogram

from telemetry.bus import Delivery, Receipt
from telemetry.config.sinks import SinkSection
from telemetry.metrics import RECORDS_OUT, REGISTRY
from telemetry.models import Event, Record
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

log = logging.getLogger(__name__)

SINK_ACCEPTED = Counter(
    "telemetry_sink_records_accepted",
    "Events a sink's receiver took, new or already held, by sink",
    ["sink"],
    registry=REGISTRY,
)
SINK_DUPLICATES = Counter(
    "telemetry_sink_records_duplicate",
    "Redelivered events the receiver already held, by sink",
    ["sink"],
    registry=REGISTRY,
)
SINK_RETRIES = Counter(
    "telemetry_sink_retries",
    "Events sent again because the receiver could not take them now, by sink and reason",
    ["sink", "reason"],
    registry=REGISTRY,
)
SINK_HELD = Counter(
    "telemetry_sink_batches_held",
    "Batches given back to the bus because the receiver stayed unavailable, by sink",
    ["sink"],
    registry=REGISTRY,
)
SINK_PUSH_SECONDS = Histogram(
    "telemetry_sink_push_seconds",
    "Time one push of a batch to the receiver took (all its requests), by sink",
    ["sink"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class SinkUnavailable(ConnectionError):
    """The receiver did not take every event of a batch in time; the batch goes back to the bus.

    A ConnectionError, so BusStage sees a failure of the surroundings: it retries the whole batch
    and reports the stage degraded, instead of splitting it and dead-lettering good events.
    """


@dataclass
class SinkItem:
    """One event to send, with every delivery that carried it (a batch may hold a redelivered copy)."""

    key: str
    doc: dict[str, Any]
    deliveries: list[Delivery] = field(default_factory=list)


SinkOutcome = Literal["ok", "duplicate", "retry", "refused"]


@dataclass(frozen=True)
class Verdict:
    outcome: SinkOutcome
    #: Why, for retry and refused: short and label-safe (e.g. ``429``, ``400:mapper_parsing_exception``).
    reason: str = ""
    #: The receiver's own words, logged with a refusal.
    detail: str = ""


TAKEN = Verdict("ok")
ALREADY_HELD = Verdict("duplicate")


def backoff(attempt: int, initial: float, ceiling: float) -> float:
    """Exponential with full jitter, so many servers do not retry in step."""
    return random.uniform(0.5, 1.0) * min(ceiling, initial * 2 ** (attempt - 1))


class SinkStage(BusStage):
    """Subclass: set ``sink``, implement ``push``."""

    topics: ClassVar[dict[str, type[Record]]] = {Event.topic: Event}
    sink: ClassVar[str] = ""

    def __init__(self, rt: Runtime, cfg: SinkSection) -> None:
        super().__init__(rt)
        self.cfg = cfg
        self.name = f"sink.{self.sink}"
        self.group = f"sink.{self.sink}"
        self.batch_size = cfg.batch_size
        self.accepted = 0
        self.duplicates = 0
        self.held = 0

    @abc.abstractmethod
    async def push(self, items: list[SinkItem]) -> Mapping[str, Verdict]:
        """Send ``items``; a verdict per key. A key left out, or an exception, means retry them all."""

    async def handle(self, records: list[tuple[Delivery, Record]]) -> list[Receipt]:
        items: dict[str, SinkItem] = {}
        for delivery, record in records:
            # an Event from a broker, its contract dict in this process (read, never changed)
            doc = record.to_dict() if isinstance(record, Event) else record if isinstance(record, dict) else None
            if doc is None:
                continue
            item = items.get(doc["id"])
            if item is None:
                item = items[doc["id"]] = SinkItem(doc["id"], doc)
            item.deliveries.append(delivery)
        refused = await self.send(list(items.values()))
        if not refused:
            return []
        bad = [(d, f"refused:{v.reason}") for it, v in refused for d in it.deliveries]
        errors = [v.detail[:500] for it, v in refused for _ in it.deliveries]
        return [await self._dead_letter(bad, errors)]

    async def send(self, items: list[SinkItem]) -> list[tuple[SinkItem, Verdict]]:
        """Push until every item is taken or refused; the refused ones are returned.

        Raises SinkUnavailable when some are still not taken after ``max_retries``.
        """
        pending, refused = items, []
        cfg = self.cfg
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(backoff(attempt, cfg.backoff_initial, cfg.backoff_max))
            began = time.perf_counter()
            try:
                verdicts = await self.push(pending)
                fallback = Verdict("retry", "no_answer")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an unreachable receiver: try again, never drop
                verdicts, fallback = {}, Verdict("retry", type(exc).__name__, str(exc))
            SINK_PUSH_SECONDS.labels(sink=self.sink).observe(time.perf_counter() - began)
            retry: list[SinkItem] = []
            reasons: dict[str, int] = {}
            for it in pending:
                v = verdicts.get(it.key, fallback)
                if v.outcome == "retry":
                    retry.append(it)
                    reasons[v.reason] = reasons.get(v.reason, 0) + 1
                elif v.outcome == "refused":
                    refused.append((it, v))
                else:
                    self._took(v.outcome == "duplicate")
            pending = retry
            if not pending:
                return refused
            for reason, n in reasons.items():
                SINK_RETRIES.labels(sink=self.sink, reason=reason).inc(n)
            if attempt == 0:
                log.warning(
                    "%s: %d events not taken (%s); retrying",
                    self.name,
                    len(pending),
                    ", ".join(f"{r}: {n}" for r, n in reasons.items())
                    + (f" {fallback.detail}" if fallback.detail else ""),
                )
        self.held += 1
        SINK_HELD.labels(sink=self.sink).inc()
        raise SinkUnavailable(
            f"{len(pending)} events not taken after {cfg.max_retries} retries; the batch goes back to the bus"
        )

    def _took(self, duplicate: bool) -> None:
        self.accepted += 1
        SINK_ACCEPTED.labels(sink=self.sink).inc()
        if duplicate:
            self.duplicates += 1
            SINK_DUPLICATES.labels(sink=self.sink).inc()
        else:
            RECORDS_OUT.labels(stage=self.name).inc()

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "held": self.held,
        }
