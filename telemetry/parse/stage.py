"""The server's parse stage: RawLog records in, Events out, counted per type.

Events are published to the ``events`` topic before ``handle`` returns, so
the RawLogs are acknowledged only once their events are durable on the bus
(BusStage's contract). An Event takes its RawLog's id: a RawLog redelivered
after a crash yields the same event id, and the event stores drop the copy.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Histogram

import msgpack
import orjson

from telemetry.bus import Delivery
from telemetry.bus.base import OutMessage
from telemetry.metrics import BUS_PUBLISHED, RECORDS_OUT, REGISTRY
from telemetry.models import Event, RawLog, Record
from telemetry.parse.parser import FAILURE_TAG, TIMEOUT_TAG, Outcome, Parser
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

PARSED = Counter("telemetry_parse_matches", "Entries a grok expression matched, by log type", ["type"],
                 registry=REGISTRY)
FAILED = Counter("telemetry_parse_failures", "Entries no expression matched (_grokparsefailure), by log type",
                 ["type"], registry=REGISTRY)
TIMED_OUT = Counter("telemetry_parse_timeouts", "Entries cut by the time budget (_groktimeout), by log type",
                    ["type"], registry=REGISTRY)
BATCH_SECONDS = Histogram("telemetry_parse_batch_seconds", "Time spent parsing one batch of entries",
                          registry=REGISTRY)
_COUNTERS = {Outcome.MATCH: PARSED, Outcome.FAILURE: FAILED, Outcome.TIMEOUT: TIMED_OUT}


def _encode(event: dict[str, Any], fmt: str) -> bytes:
    """As ``telemetry.models.encode`` does for an Event (its to_dict is this dict)."""
    if fmt == "msgpack":
        return msgpack.packb(event, use_bin_type=True)
    return orjson.dumps(event)


class ParseStage(BusStage):
    name = "stage.parse"
    group = "parse"
    topics: ClassVar[dict[str, type[Record]]] = {"raw_logs": RawLog}

    def __init__(self, runtime: Runtime, parser: Parser | None = None) -> None:
        super().__init__(runtime)
        cfg = runtime.settings.parse
        # Built here, not in start(): a broken operator pattern fails the daemon's start loudly.
        self.parser = parser or Parser(patterns_dirs=cfg.patterns_dirs, timeout=cfg.timeout,
                                       default_tz=ZoneInfo(cfg.timezone))
        self.outcomes: Tally[str] = Tally()
        self._fmt = runtime.settings.bus.format

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        raws = [r for _, r in records if isinstance(r, RawLog)]
        # In the event loop's (main) thread on purpose: the fast engine's time budget is a SIGALRM timer.
        # Events go out as the JSON of their contract dicts (models.event_dict): the same bytes an
        # Event model would give, without building one per entry.
        with BATCH_SECONDS.time():
            events = self.parser.parse_raws_dicts(raws)
        await self.runtime.bus.publish(Event.topic, [
            OutMessage(value=_encode(ev, self._fmt), key=ev["host"].encode() or None) for ev in events
        ])
        BUS_PUBLISHED.labels(topic=Event.topic).inc(len(events))
        RECORDS_OUT.labels(stage=self.name).inc(len(events))
        for raw, ev in zip(raws, events, strict=True):
            tags = ev["tags"]
            outcome = (Outcome.TIMEOUT if TIMEOUT_TAG in tags else Outcome.FAILURE if FAILURE_TAG in tags
                       else Outcome.MATCH)
            _COUNTERS[outcome].labels(type=ev["type"] or raw.type or "none").inc()
            self.outcomes[outcome] += 1

    def details(self) -> dict[str, Any]:
        return {**super().details(), **{k: self.outcomes[k] for k in (Outcome.MATCH, Outcome.FAILURE, Outcome.TIMEOUT)}}
