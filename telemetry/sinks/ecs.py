"""Events as Elastic Common Schema documents, with the names operators search today kept as aliases.

Each contract field of an Event has one ECS home (``component`` is
``service.name``, ``level`` is ``log.level``, ...); the index template maps the
old name as a field alias to it, so ``type:"openstack" AND component:"glance"``
and ``service.name:"glance"`` find the same documents. ``@timestamp``,
``message`` and ``tags`` are ECS names already.

``host`` cannot be both ECS's object (``host.name``) and an alias, so it is
mapped as ``flattened``: a query on ``host`` matches any value inside it,
which is ``host.name``, and ``host.name`` itself works as in ECS.

Grok captures stay at the top level under the names they were captured as
(Logstash's habit, so ``response:500`` keeps working), unless a name would
collide with an ECS field set; such a capture moves under ``openstack.``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from telemetry.timeutil import parse_timestamp

ECS_VERSION = "8.11.0"
#: Contract field -> ECS path. The contract name becomes a field alias of the path.
ECS_PATHS = {
    "id": "event.id",
    "type": "event.module",
    "component": "service.name",
    "level": "log.level",
    "logger": "log.logger",
    "pid": "process.pid",
    "request_id": "http.request.id",
    "user_id": "user.id",
    "project_id": "cloud.project.id",
    "instance_id": "openstack.instance_id",
}
#: Aliases named like their contract field (``id`` is the document's ``_id`` instead).
ALIASES = {name: path for name, path in ECS_PATHS.items() if name != "id"}
#: Top-level names a capture must not take: ECS field sets and what this mapping writes.
RESERVED = frozenset(
    {
        "agent",
        "as",
        "client",
        "cloud",
        "code_signature",
        "container",
        "data_stream",
        "destination",
        "device",
        "dll",
        "dns",
        "ecs",
        "elf",
        "email",
        "error",
        "event",
        "faas",
        "file",
        "geo",
        "group",
        "hash",
        "host",
        "http",
        "interface",
        "labels",
        "log",
        "macho",
        "network",
        "observer",
        "orchestrator",
        "organization",
        "os",
        "package",
        "pe",
        "process",
        "registry",
        "related",
        "risk",
        "rule",
        "server",
        "service",
        "source",
        "span",
        "threat",
        "tls",
        "trace",
        "transaction",
        "url",
        "user",
        "user_agent",
        "vlan",
        "volume",
        "vulnerability",
        "x509",
        "openstack",
        "_id",
        "_index",
        "_source",
        "_routing",
    }
)
_CORE = frozenset({"id", "@timestamp", "host", "message", "tags", *ECS_PATHS})


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def ecs_document(event: dict[str, Any]) -> dict[str, Any]:
    """An Event's contract dict (``Event.to_dict()``) as an ECS document."""
    doc: dict[str, Any] = {
        "@timestamp": event["@timestamp"],
        "message": event.get("message") or "",
        "ecs": {"version": ECS_VERSION},
    }
    if event.get("tags"):
        doc["tags"] = list(event["tags"])
    if event.get("host"):
        doc["host"] = {"name": event["host"]}
    for name, path in ECS_PATHS.items():
        value = event.get(name)
        if value is not None and value != "":
            _put(doc, path, value)
    if event.get("type") and event.get("component"):
        _put(doc, "event.dataset", f"{event['type']}.{event['component']}")
    for name, value in event.items():
        if name in _CORE:
            continue
        top = name.split(".", 1)[0]
        if top in RESERVED:
            _put(doc, f"openstack.{name}", value)
        else:
            doc[name] = value
    return doc


def daily_index(prefix: str, timestamp: str | datetime) -> str:
    """``PREFIX-YYYY.MM.DD`` of the event's UTC day: a redelivered event lands where its first copy did."""
    when = timestamp if isinstance(timestamp, datetime) else parse_timestamp(timestamp)
    return f"{prefix}-{when:%Y.%m.%d}"


def _keyword(ignore_above: int = 1024) -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": ignore_above}


def index_template(prefix: str, shards: int, replicas: int, policy: str | None) -> dict[str, Any]:
    """The composable index template (``PUT _index_template/NAME``) of the daily indices."""
    settings: dict[str, Any] = {
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        "index.mapping.total_fields.limit": 2000,
    }
    if policy:
        # The day in the index name is the index's age for ILM: a late event's old-day index
        # is deleted on time, not a retention period after the late event created it.
        settings.update({"index.lifecycle.name": policy, "index.lifecycle.parse_origination_date": True})
    props: dict[str, Any] = {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "tags": _keyword(),
        "host": {"type": "flattened"},
        "ecs": {"properties": {"version": _keyword()}},
        "event": {"properties": {"id": _keyword(), "module": _keyword(), "dataset": _keyword()}},
        "service": {"properties": {"name": _keyword()}},
        "log": {"properties": {"level": _keyword(), "logger": _keyword()}},
        "process": {"properties": {"pid": {"type": "long"}}},
        "http": {"properties": {"request": {"properties": {"id": _keyword()}}}},
        "user": {"properties": {"id": _keyword()}},
        "cloud": {"properties": {"project": {"properties": {"id": _keyword()}}}},
        "openstack": {"properties": {"instance_id": _keyword()}},
    }
    for name, path in ALIASES.items():
        props[name] = {"type": "alias", "path": path}
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": 200,
        "template": {
            "settings": settings,
            "mappings": {
                # Captures are mostly identifiers and words: keyword, as ECS maps strings by default.
                "dynamic_templates": [
                    {"strings_as_keyword": {"match_mapping_type": "string", "mapping": _keyword()}}
                ],
                "properties": props,
            },
        },
        "_meta": {"managed_by": "openstack-telemetry", "ecs_version": ECS_VERSION},
    }


def ilm_policy(retention: float) -> dict[str, Any]:
    """Hot until ``retention`` seconds past the index's day, then deleted."""
    return {
        "phases": {
            "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
            "delete": {"min_age": f"{int(retention)}s", "actions": {"delete": {}}},
        },
        "_meta": {"managed_by": "openstack-telemetry"},
    }
