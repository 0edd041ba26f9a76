"""From bus records to store rows and back.

A notification becomes an event the way Ceilometer's event store kept it:
``type: notification``, its ``event_type`` and ``publisher_id``, its priority
as ``level``, and the payload flattened into traits (nested keys joined with
dots), so one query language covers log lines and notifications alike.
"""

from __future__ import annotations

from typing import Any

import orjson

from telemetry.events.times import from_micros, to_micros
from telemetry.models import Event, Notification, Record

#: Columns besides ``ts``/``seq``, in table order. Anything else goes to ``fields``.
COLUMNS = (
    "id", "host", "component", "type", "level", "logger", "pid", "request_id", "user_id",
    "project_id", "instance_id", "event_type", "publisher_id", "message",
)
_EVENT_CORE = ("host", "component", "type", "level", "logger", "pid", "request_id", "user_id",
               "project_id", "instance_id", "message", "tags")
#: Which service emits a notification, from the first word of its event_type, so
#: ``component:nova`` finds nova's notifications as well as its log lines.
SERVICE_OF_EVENT = {
    "compute": "nova", "scheduler": "nova", "compute_task": "nova", "aggregate": "nova", "keypair": "nova",
    "volume": "cinder", "snapshot": "cinder", "backup": "cinder", "consistencygroup": "cinder",
    "port": "neutron", "network": "neutron", "subnet": "neutron", "router": "neutron",
    "floatingip": "neutron", "security_group": "neutron", "security_group_rule": "neutron",
    "image": "glance", "orchestration": "heat", "stack": "heat", "identity": "keystone",
    "dns": "designate", "share": "manila", "baremetal": "ironic", "magnum": "magnum",
}
#: Payload (and context) keys that name a column under another name, as Ceilometer's traits did.
_ALIASES = {"tenant_id": "project_id", "_context_request_id": "request_id", "_context_user_id": "user_id",
            "_context_project_id": "project_id", "_context_tenant": "project_id"}

Row = tuple[Any, ...]


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay lists (queries match any element)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def event_row(ev: Event) -> Row:
    data = ev.to_dict()
    data.pop("@timestamp", None)
    fields = {k: v for k, v in data.items() if k not in _EVENT_CORE and k not in COLUMNS}
    cols = {c: data.get(c) for c in COLUMNS}
    cols["id"] = ev.id
    cols["message"] = ev.message or ""
    pid = _int_or_none(cols["pid"])
    if pid is None and cols["pid"] is not None:
        fields["pid"] = cols["pid"]
    cols["pid"] = pid
    return _row(to_micros(ev.timestamp), cols, ev.tags, fields)


def notification_row(n: Notification) -> Row:
    traits = flatten(dict(n.payload))
    context = {k: v for k, v in (n.model_extra or {}).items() if k.startswith("_context_")}
    cols: dict[str, Any] = {c: None for c in COLUMNS}
    for source in (traits, context):
        for key, value in source.items():
            col = _ALIASES.get(key, key)
            if col in COLUMNS and col not in ("id", "type", "level") and cols[col] is None and value is not None:
                cols[col] = value if col == "pid" else str(value)
    publisher_host = n.publisher_id.partition(".")[2]
    cols.update(
        id=n.message_id, type="notification", level=n.priority, event_type=n.event_type,
        publisher_id=n.publisher_id,
    )
    cols["host"] = cols["host"] or publisher_host or None
    cols["component"] = cols["component"] or SERVICE_OF_EVENT.get(n.event_type.split(".", 1)[0])
    cols["message"] = str(cols["message"] or n.event_type)
    cols["pid"] = _int_or_none(cols["pid"])
    fields = {k: v for k, v in traits.items() if k not in cols or k in ("id", "type", "level")}
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
    out: dict[str, Any] = {"id": values["id"], "@timestamp": from_micros(ts).isoformat(timespec="microseconds").replace("+00:00", "Z")}
    for c in _EVENT_CORE:
        out[c] = values.get(c)
    out["tags"] = orjson.loads(tags)
    for c in ("event_type", "publisher_id"):
        if values[c] is not None:
            out[c] = values[c]
    for k, v in orjson.loads(fields).items():
        out.setdefault(k, v)
    return out
