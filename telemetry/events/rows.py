"""From bus records to store rows and back.

A notification is stored as its document (``telemetry.events.documents``),
the same one the rule engine matches alarms against.
"""

from __future__ import annotations

from typing import Any

import orjson

from telemetry.events.documents import COLUMNS, CORE, int_or_none, notification_document
from telemetry.events.times import format_micros, to_micros
from telemetry.models import Event, Notification, Record

#: Keys of a notification document that are not stored as fields.
_DOC_ONLY = frozenset({"@timestamp", "tags"})
Row = tuple[Any, ...]


def event_row(ev: Event) -> Row:
    data = ev.to_dict()
    data.pop("@timestamp", None)
    fields = {k: v for k, v in data.items() if k not in CORE and k not in COLUMNS}
    cols = {c: data.get(c) for c in COLUMNS}
    cols["id"] = ev.id
    cols["message"] = ev.message or ""
    pid = int_or_none(cols["pid"])
    if pid is None and cols["pid"] is not None:
        fields["pid"] = cols["pid"]
    cols["pid"] = pid
    return _row(to_micros(ev.timestamp), cols, ev.tags, fields)


def notification_row(n: Notification) -> Row:
    """The row of ``notification_document(n)``: what search returns is what the rules matched."""
    doc = notification_document(n)
    cols = {c: doc.get(c) for c in COLUMNS}
    fields = {k: v for k, v in doc.items() if k not in cols and k not in _DOC_ONLY}
    return _row(to_micros(n.timestamp), cols, [], fields)


def _row(ts: int, cols: dict[str, Any], tags: list[str], fields: dict[str, Any]) -> Row:
    return (ts, *(cols[c] for c in COLUMNS), orjson.dumps(tags).decode(),
            orjson.dumps(fields, default=str).decode())


def record_row(record: Record) -> Row:
    if isinstance(record, Notification):
        return notification_row(record)
    if isinstance(record, Event):
        return event_row(record)
    raise TypeError(f"the event store keeps events and notifications, not {type(record).__name__}")


#: The SELECT list that ``row_dict`` reads back.
SELECT_COLUMNS = "e.ts, " + ", ".join(f"e.{c}" for c in COLUMNS) + ", e.tags, e.fields"


def row_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored row as the API returns it: the Event field names, extra fields at the top level."""
    ts, *rest = row
    values = dict(zip(COLUMNS, rest[: len(COLUMNS)]))
    tags, fields = rest[len(COLUMNS):]
    out: dict[str, Any] = {"id": values["id"], "@timestamp": format_micros(ts)}
    for c in CORE:
        out[c] = values.get(c)
    out["tags"] = orjson.loads(tags)
    for c in ("event_type", "publisher_id"):
        if values[c] is not None:
            out[c] = values[c]
    for k, v in orjson.loads(fields).items():
        out.setdefault(k, v)
    return out
