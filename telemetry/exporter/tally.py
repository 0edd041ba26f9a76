"""What the log counters count of each event: its component and level label, and whether it is an HTTP
access line (method, status code, duration).

Apart from the stage (``logs``) because it runs for every parsed log line: plain, synchronous code that
mypyc compiles (``telemetry._native``). Label values come from log text, so each is bounded here: levels
and methods to known words, status codes to 100-599, components to the first ``MAX_COMPONENTS`` seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from telemetry.parse.normalise import LEVELS, normal_level
from telemetry.recent import RecentIds

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


class LogTally:
    """A batch's counts by label set, each event counted once (a redelivered batch is not counted again)."""

    def __init__(self) -> None:
        self.components: set[str] = set()
        #: Redelivery of a batch must not count its lines again (within a recent window).
        self._seen = RecentIds(100_000)

    def component(self, name: str) -> str:
        if name in self.components:
            return name
        if len(self.components) < MAX_COMPONENTS:
            self.components.add(name)
            return name
        return OTHER

    def count(self, docs: Sequence[Mapping[str, Any]]) -> tuple[
            dict[tuple[str, str], int], dict[tuple[str, str, str], int], list[tuple[str, float]]]:
        """Lines by (component, level), requests by (component, method, code), and request durations by
        component, of the events not seen before."""
        lines: dict[tuple[str, str], int] = {}
        requests: dict[tuple[str, str, str], int] = {}
        durations: list[tuple[str, float]] = []
        for doc, fresh in zip(docs, self._seen.fresh_many([doc["id"] for doc in docs])):
            if not fresh:
                continue
            component = self.component(doc.get("component") or "none")
            key = (component, level_label(doc.get("level")))
            lines[key] = lines.get(key, 0) + 1
            if _METHOD_NAMES.isdisjoint(doc):
                continue
            hit = access(doc)
            if hit is None:
                continue
            method, code, seconds = hit
            rkey = (component, method, code)
            requests[rkey] = requests.get(rkey, 0) + 1
            if seconds is not None:
                durations.append((component, seconds))
        return lines, requests, durations
