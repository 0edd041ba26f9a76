"""From bus records to store rows and back.

A notification is stored as its document (``telemetry.events.documents``),
the same one the rule engine matches alarms against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson

from telemetry.events.documents import COLUMNS, CORE, int_or_none, notification_document
from telemetry.events.times import format_micros, iso_micros, to_micros
from telemetry.fastcodec import decode_record
from telemetry.models import Event, Notification, Record
from telemetry.stage import reject_reason

#: Keys of a notification document that are not stored as fields.
_DOC_ONLY = frozenset({"@timestamp", "tags"})
#: Keys of an event that are columns (or the time, or tags), not fields.
_NOT_FIELDS = frozenset({*CORE, *COLUMNS, "@timestamp"})
Row = tuple[Any, ...]
#: The columns every event dict has (COLUMNS but a notification's event_type and publisher_id, last).
_contract_columns = itemgetter(*COLUMNS[:-2])
assert COLUMNS[-2:] == ("event_type", "publisher_id")
_PID, _MESSAGE = COLUMNS.index("pid"), COLUMNS.index("message")


def event_row(ev: Event | Mapping[str, Any]) -> Row:
    """An event's row, from the Event or from its contract dict (as the parse stage hands it over in-process).

    The dict is shared with the other consumers of the event: it is read, never changed.
    """
    if isinstance(ev, Event):
        data: Mapping[str, Any] = ev.to_dict()
        ts = to_micros(ev.timestamp)
    else:
        data = ev
        ts = iso_micros(data["@timestamp"])
    get = data.get
    try:  # the contract's columns, which every event dict has: one C call, not a get per column
        values = [*_contract_columns(data), get("event_type"), get("publisher_id")]
    except KeyError:  # a dict of some other making
        values = [get(c) for c in COLUMNS]
    if not values[_MESSAGE]:
        values[_MESSAGE] = ""
    fields = {k: v for k, v in data.items() if k not in _NOT_FIELDS}
    raw_pid = values[_PID]
    if raw_pid is not None and raw_pid.__class__ is not int:
        pid = int_or_none(raw_pid)
        if pid is None:
            fields["pid"] = raw_pid
        values[_PID] = pid
    tags = get("tags")
    return (ts, *values, orjson.dumps(tags).decode() if tags else "[]",
            orjson.dumps(fields, default=str).decode() if fields else "{}")


def notification_row(n: Notification) -> Row:
    """The row of ``notification_document(n)``: what search returns is what the rules matched."""
    doc = notification_document(n)
    cols = {c: doc.get(c) for c in COLUMNS}
    fields = {k: v for k, v in doc.items() if k not in cols and k not in _DOC_ONLY}
    return _row(to_micros(n.timestamp), cols, [], fields)


def _row(ts: int, cols: dict[str, Any], tags: list[str], fields: dict[str, Any]) -> Row:
    return (ts, *(cols[c] for c in COLUMNS), orjson.dumps(tags).decode(),
            orjson.dumps(fields, default=str).decode())


def record_row(record: Record | Mapping[str, Any]) -> Row:
    if isinstance(record, Notification):
        return notification_row(record)
    if isinstance(record, (Event, Mapping)):
        return event_row(record)
    raise TypeError(f"the event store keeps events and notifications, not {type(record).__name__}")


def rows_of(records: Sequence[Record | Mapping[str, Any] | bytes]) -> tuple[list[Row], list[tuple[int, str]]]:
    """The records' rows, and (index, reason) of each that cannot be stored, so one odd record holds back none.

    An event may come as the bytes a broker carried (``EventStage``): decoded here, where the rows are
    built, with the reason the bus stage would give for bytes that are not an event.
    """
    rows: list[Row] = []
    bad: list[tuple[int, str]] = []
    for i, given in enumerate(records):
        if isinstance(given, bytes):
            try:
                record: Record | Mapping[str, Any] = decode_record(Event, given, shared=False)
            except Exception as exc:
                bad.append((i, reject_reason(exc)))
                continue
        else:
            record = given
        try:
            # An event's contract dict (as the parse stage hands them over) straight to its row: record_row's
            # type checks, a Mapping ABC among them, were a tenth of building it.
            rows.append(event_row(record) if record.__class__ is dict else record_row(record))
        except Exception as exc:
            bad.append((i, f"unstorable:{type(exc).__name__}"))
    return rows, bad


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
