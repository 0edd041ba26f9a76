"""Tracing one request or resource across services: the query that finds every line and notification naming it.

Defined here, beside the query language, so ``telemetry search --request-id``
and the console's trace view (``/v1/events/trace``) find the same events.
"""

from __future__ import annotations

#: Where each traced id can be: log captures, notification payload fields, and (free text) the message.
TRACE_FIELDS: dict[str, tuple[str, ...]] = {
    "request": ("request_id", "global_request_id", "_context_global_request_id"),
    "instance": ("instance_id", "instance_uuid", "resource_id", "nova_object.data.uuid"),
    "volume": ("volume_id", "resource_id", "cinder_object.data.id"),
}


def quote(value: str) -> str:
    """A query-language phrase holding ``value`` exactly (quotes and backslashes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def trace_query(kind: str, value: str) -> str:
    """One resource's history: any field that names it, or (instances, volumes) its id in the message."""
    terms = [f"{f}:{quote(value)}" for f in TRACE_FIELDS[kind]]
    if kind != "request":
        terms.append(quote(value))  # "device_id=ID", "Attaching volume ID": lines that name it in passing
    return " OR ".join(terms)
