"""Event alarms (Aodh's event rule) and log alarms (a query over parsed log events).

An event alarm fires on one notification whose ``event_type`` matches
(shell wildcards) and whose traits match the query, as Aodh's event
evaluator does. A log alarm counts matching events over a sliding window
(``count``/``rate``), or fires on a single match (``seen``: a CRITICAL line,
a NoValidHost) and returns to ``ok`` once the window passes without another.
The matched events go into ``reason_data`` so the page says what was seen.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Mapping
from typing import Any

from telemetry.rules.match import compile_query, lookup
from telemetry.rules.terms import COMPARE, compile_terms
from telemetry.rules.threshold import Verdict
from telemetry.rules.models import ALARM, OK, UNKNOWN, EventRule, LogRule

MAX_EVIDENCE = 5  # matched events kept in reason_data


def trait(doc: Mapping[str, Any], field: str) -> Any:
    """A field of a notification document; Aodh's ``traits.X`` (and ``payload.X``) name the flattened ``X``."""
    value = lookup(doc, field)
    if value is None:
        for prefix in ("traits.", "payload."):
            if field.startswith(prefix):
                return lookup(doc, field[len(prefix):])
    return value


def _summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("id", "@timestamp", "timestamp", "host", "component", "level", "event_type", "request_id",
            "instance_id", "message")
    return {k: doc[k] for k in keep if doc.get(k) not in (None, "")}


class EventUnit:
    """Aodh's event rule: ``alarm`` on the first matching notification."""

    def __init__(self, rule: EventRule, owner: str) -> None:
        self.rule = rule
        self.owner = owner
        self.type_rx = re.compile(fnmatch.translate(rule.event_type))
        self.matches = compile_terms(rule.query, trait)

    def check(self, doc: Mapping[str, Any]) -> Verdict | None:
        etype = str(doc.get("event_type") or "")
        if not etype or not self.type_rx.match(etype) or not self.matches(doc):
            return None
        ident = doc.get("message_id") or doc.get("id")
        return ALARM, f"Event <id={ident},event_type={etype}> hits the query <query={self._query_text()}>.", {
            "type": "event", "event": _summary(doc)}

    def _query_text(self) -> str:
        return "[" + ", ".join(f'{{"field": "{q.field}", "op": "{q.op}", "value": "{q.value}"}}'
                               for q in self.rule.query) + "]"


class LogUnit:
    """A count, rate or single sighting of matching log events over ``period`` seconds."""

    def __init__(self, rule: LogRule, owner: str) -> None:
        self.rule = rule
        self.owner = owner
        self.matcher = compile_query(rule.query)
        self.hits: deque[tuple[float, dict[str, Any]]] = deque()
        self.compare = COMPARE[rule.comparison_operator]

    def offer(self, doc: Mapping[str, Any], ts: float, now: float) -> bool:
        """Record a matching event; returns whether it matched."""
        if not self.matcher(doc):
            return False
        self.record(doc, ts, now)
        return True

    def record(self, doc: Mapping[str, Any], ts: float, now: float) -> None:
        """Keep an event the matcher accepted (the engine tests first, then looks at the alarm)."""
        self.hits.append((max(ts, now - self.rule.period + 1e-3) if ts > now else ts, _summary(doc)))

    def evaluate(self, now: float, current: str) -> Verdict | None:
        rule = self.rule
        cutoff = now - rule.period
        while self.hits and self.hits[0][0] < cutoff:
            self.hits.popleft()
        count = len(self.hits)
        evidence = [h[1] for h in list(self.hits)[-MAX_EVIDENCE:]]
        data: dict[str, Any] = {"type": "log", "query": rule.query, "count": count, "period": rule.period,
                                "events": evidence}
        if rule.mode == "seen":
            if count:
                return ALARM, f"{count} events matching <{rule.query}> seen in the last {rule.period}s", data
            if current == UNKNOWN:
                return OK, f"no event matching <{rule.query}> in the last {rule.period}s", data
            return OK, f"no event matching <{rule.query}> in the last {rule.period}s", data
        value = count / rule.period if rule.mode == "rate" else float(count)
        data["value"] = value
        breach = self.compare(value, rule.threshold)
        what = f"{rule.mode} of events matching <{rule.query}> over {rule.period}s is {value:g}"
        return (ALARM if breach else OK), f"Transition to {ALARM if breach else OK}: {what}", data


def doc_time(doc: Mapping[str, Any], default: float) -> float:
    """Epoch seconds of an event dict, or ``default`` when it has none we can read."""
    from telemetry.timeutil import parse_timestamp

    raw = doc.get("@timestamp") or doc.get("timestamp")
    if raw is None:
        return default
    try:
        return parse_timestamp(raw).timestamp()
    except ValueError:
        return default
