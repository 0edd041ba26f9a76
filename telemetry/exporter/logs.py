"""Counters derived from parsed log events: lines by component and level, API requests from access lines.

They let Grafana chart error rates per service and the OpenStack APIs'
request rates, error rates and latency without querying the event store.
Access lines are recognised by their fields: a method and an HTTP status,
under the names the shipped patterns use (``method``/``verb``/``http_verb``,
``status``/``response``/``http_status_code``), and a duration in seconds
(``duration``/``request_time``) when the line has one.

Label values come from log text, so each is bounded: levels and methods to
known words, status codes to 100-599, components to the first
``MAX_COMPONENTS`` seen (``tally``); anything else is ``other``. The stage reads events
in one consumer group shared by all servers, so summing over instances counts
each line once.
"""

from __future__ import annotations

from typing import ClassVar

from prometheus_client import Counter, Histogram

from telemetry.bus import Delivery
from telemetry.exporter.base import ObserverStage
from telemetry.exporter.tally import LogTally
from telemetry.metrics import REGISTRY, Bound
from telemetry.models import Event, Record
from telemetry.runtime import Runtime

LOG_EVENTS = Counter(
    "telemetry_log_events",
    "Parsed log events, by component and level",
    ["component", "level"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "telemetry_api_requests",
    "API requests seen in access log lines, by component, method and status code",
    ["component", "method", "code"],
    registry=REGISTRY,
)
API_DURATION = Histogram(
    "telemetry_api_request_duration_seconds",
    "Request durations written in access log lines, by component",
    ["component"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class LogCounters(ObserverStage):
    """Counts each parsed event once (a shared consumer group), acknowledging as soon as it counted."""

    name = "exporter.log_counters"
    group = "exporter.logs"
    topics: ClassVar[dict[str, type[Record]]] = {Event.topic: Event}

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.tally = LogTally()
        self._lines = Bound(LOG_EVENTS)
        self._requests = Bound(API_REQUESTS)
        self._duration = Bound(API_DURATION)

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        # Counted per label set over the batch, then one inc() each: a batch holds a handful of
        # (component, level) pairs, and a labels() lookup per line was a share of the daemon's CPU.
        # Its contract dict in this process (read, never changed), an Event from a broker.
        docs = [r if isinstance(r, dict) else r.to_dict() if isinstance(r, Event) else None for _, r in records]
        lines, requests, durations = self.tally.count([doc for doc in docs if doc is not None])
        for key, n in lines.items():
            self._lines(*key).inc(n)
        for rkey, n in requests.items():
            self._requests(*rkey).inc(n)
        for component, seconds in durations:
            self._duration(component).observe(seconds)
