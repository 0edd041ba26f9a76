"""A notification as one searchable document: the one mapping search and alarms share.

A notification becomes an event the way Ceilometer's event store kept it:
``type: notification``, its ``event_type`` and ``publisher_id``, its priority
as ``level``, and the payload flattened into traits (nested keys joined with
dots) at the top level, so one query language covers log lines and
notifications alike. The event store stores this document and the rule
engine evaluates event and log alarms against it, so ``component:nova``
matches the same notifications in ``telemetry search`` and in an alarm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry.events.times import format_micros, to_micros
from telemetry.models import Notification

#: The event store's columns besides ``ts``/``seq``, in table order; anything else is a field.
COLUMNS = (
    "id", "host", "component", "type", "level", "logger", "pid", "request_id", "user_id",
    "project_id", "instance_id", "message", "event_type", "publisher_id",
)
#: The Event contract's fields a document always carries, in the order the API shows them.
CORE = ("host", "component", "type", "level", "logger", "pid", "request_id", "user_id",
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
ALIASES = {"tenant_id": "project_id", "_context_request_id": "request_id", "_context_user_id": "user_id",
           "_context_project_id": "project_id", "_context_tenant": "project_id"}
#: Columns a payload key of the same name never fills: they describe the notification itself.
_OWN = frozenset({"id", "type", "level"})


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty objects stay as they are."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def notification_document(n: Notification) -> dict[str, Any]:
    """The notification as search returns it (and as event and log alarms see it)."""
    traits = flatten(n.payload)
    context = {k: v for k, v in (n.model_extra or {}).items() if k.startswith("_context_")}
    cols: dict[str, Any] = dict.fromkeys(COLUMNS)
    for source in (traits, context):
        for key, value in source.items():
            col = ALIASES.get(key, key)
            if col in cols and col not in _OWN and cols[col] is None and value is not None:
                cols[col] = value if col == "pid" else str(value)
    cols.update(id=n.message_id, type="notification", level=n.priority, event_type=n.event_type,
                publisher_id=n.publisher_id)
    cols["host"] = cols["host"] or n.publisher_id.partition(".")[2] or None
    cols["component"] = cols["component"] or SERVICE_OF_EVENT.get(n.event_type.split(".", 1)[0])
    cols["message"] = str(cols["message"] or n.event_type)
    cols["pid"] = int_or_none(cols["pid"])
    doc: dict[str, Any] = {"id": cols["id"], "@timestamp": format_micros(to_micros(n.timestamp))}
    for c in CORE:
        doc[c] = [] if c == "tags" else cols[c]
    doc["event_type"] = cols["event_type"]
    doc["publisher_id"] = cols["publisher_id"]
    for k, v in traits.items():
        if k not in cols:
            doc[k] = v
    return doc
