"""Counters derived from parsed log events: lines by component and level, API requests from access lines.

They let Grafana chart error rates per service and the OpenStack APIs'
request rates, error rates and latency without querying the event store.
Access lines are recognised by their fields: a method and an HTTP status,
under the names the shipped patterns use (``method``/``verb``/``http_verb``,
``status``/``response``/``http_status_code``), and a duration in seconds
(``duration``/``request_time``) when the line has one.

Label values come from log text, so each is bounded: levels and methods to
known words, status codes to 100-599, components to the first
``MAX_COMPONENTS`` seen; anything else is ``other``. The stage reads events
in one consumer group shared by all servers, so summing over instances counts
each line once.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any, ClassVar

from prometheus_client import Counter, Histogram

from telemetry.bus import Delivery
from telemetry.exporter.base import ObserverStage
from telemetry.metrics import REGISTRY, Bound
from telemetry.models import Event, Record
from telemetry.parse.normalise import LEVELS, normal_level
from telemetry.recent import RecentIds
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

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "COPY", "CONNECT", "TRACE"})
METHOD_FIELDS = ("method", "verb", "http_verb")
STATUS_FIELDS = ("status", "response", "http_status_code")
DURATION_FIELDS = ("duration", "request_time")
MAX_COMPONENTS = 200
OTHER = "other"


def _first(doc: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        v = doc.get(n)
        if v is not None and v != "":
            return v
    return None


def level_label(level: Any) -> str:
    label = _LABELS.get(level) if level.__class__ is str else None
    if label is not None:
        return label
    if not isinstance(level, str) or not level:
        return "none"
    normal = normal_level(level)  # as the parser reads a level: the label and the stored event agree
    label = normal if normal in LEVELS else OTHER
    if len(_LABELS) < _MAX_LABELS:  # levels come from log text: the memo is bounded like the labels
        _LABELS[level] = label
    return label


#: Each level text seen, and its label: a handful of spellings in practice.
_LABELS: dict[str, str] = {}
_MAX_LABELS = 1000
#: Names an access line's method may have: an event with none of them is no access line.
_METHOD_NAMES = frozenset(METHOD_FIELDS)


def access(doc: Mapping[str, Any]) -> tuple[str, str, float | None] | None:
    """(method, status code, duration in seconds or None) if the event is an HTTP access line."""
    method, status = _first(doc, METHOD_FIELDS), _first(doc, STATUS_FIELDS)
    if method is None or status is None:
        return None
    try:
        code = int(status)
    except (TypeError, ValueError):
        return None
    if not 100 <= code <= 599:
        return None
    m = str(method).upper()
    duration = _first(doc, DURATION_FIELDS)
    try:
        seconds = float(duration) if duration is not None else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is not None and not 0 <= seconds < 1e6:
        seconds = None
    return (m if m in METHODS else OTHER), str(code), seconds


class LogCounters(ObserverStage):
    """Counts each parsed event once (a shared consumer group), acknowledging as soon as it counted."""

    name = "exporter.log_counters"
    group = "exporter.logs"
    topics: ClassVar[dict[str, type[Record]]] = {Event.topic: Event}

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.components: set[str] = set()
        #: Redelivery of a batch must not count its lines again (within a recent window).
        self._seen = RecentIds(100_000)
        self._lines = Bound(LOG_EVENTS)
        self._requests = Bound(API_REQUESTS)
        self._duration = Bound(API_DURATION)

    def _component(self, name: str) -> str:
        if name in self.components:
            return name
        if len(self.components) < MAX_COMPONENTS:
            self.components.add(name)
            return name
        return OTHER

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        # Counted per label set over the batch, then one inc() each: a batch holds a handful of
        # (component, level) pairs, and a labels() lookup per line was a share of the daemon's CPU.
        lines: Tally[tuple[str, str]] = Tally()
        requests: Tally[tuple[str, str, str]] = Tally()
        # its contract dict in this process (read, never changed), an Event from a broker
        docs = [r if isinstance(r, dict) else r.to_dict() if isinstance(r, Event) else None for _, r in records]
        known = [doc for doc in docs if doc is not None]
        for doc, fresh in zip(known, self._seen.fresh_many([doc["id"] for doc in known])):
            if not fresh:
                continue
            component = self._component(doc.get("component") or "none")
            lines[component, level_label(doc.get("level"))] += 1
            if _METHOD_NAMES.isdisjoint(doc):
                continue
            hit = access(doc)
            if hit is None:
                continue
            method, code, seconds = hit
            requests[component, method, code] += 1
            if seconds is not None:
                self._duration(component).observe(seconds)
        for key, n in lines.items():
            self._lines(*key).inc(n)
        for rkey, n in requests.items():
            self._requests(*rkey).inc(n)
