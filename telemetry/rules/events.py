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

from telemetry.models import Event, Notification
from telemetry.rules.alarms import COMPARE, Verdict, _coerce
from telemetry.rules.match import compile_query, lookup
from telemetry.rules.models import ALARM, OK, UNKNOWN, EventRule, LogRule

MAX_EVIDENCE = 5  # matched events kept in reason_data


def flatten(data: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: how Ceilometer's event store keeps payload fields."""
    out = {} if out is None else out
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flatten(v, key + ".", out)
        else:
            out[key] = v
    return out


def notification_doc(n: Notification) -> dict[str, Any]:
    """A notification as the event store shows it: ``type: notification`` and flattened payload."""
    traits = flatten(n.payload)
    doc: dict[str, Any] = {**traits, "traits": traits, "payload": n.payload}
    doc.update(type="notification", event_type=n.event_type, message_id=n.message_id, priority=n.priority,
               level=n.priority, publisher_id=n.publisher_id, host=n.publisher_id.partition(".")[2],
               timestamp=n.timestamp.isoformat(), id=n.message_id)
    doc.setdefault("message", n.event_type)
    return doc


def event_doc(e: Event) -> dict[str, Any]:
    return e.to_dict()


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
        self.tests = [(q.field, COMPARE[q.op], q.value) for q in rule.query]

    def _trait(self, doc: Mapping[str, Any], field: str) -> Any:
        value = lookup(doc, field)
        if value is None and field.startswith("traits."):
            value = lookup(doc, field[len("traits."):])
        return value

    def check(self, doc: Mapping[str, Any]) -> Verdict | None:
        etype = str(doc.get("event_type") or "")
        if not etype or not self.type_rx.match(etype):
            return None
        for field, cmp, want in self.tests:
            have = self._trait(doc, field)
            if have is None:
                return None
            a, b = _coerce(have, want)
            if not cmp(a, b):
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
        self.hits.append((max(ts, now - self.rule.period + 1e-3) if ts > now else ts, _summary(doc)))
        return True

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
