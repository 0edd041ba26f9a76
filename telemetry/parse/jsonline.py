"""JSON log lines: oslo.log's JSONFormatter onto the Event contract, any other object as its fields.

oslo.log can write one JSON object per record (``formatters.JSONFormatter``)
with Python's logging names (``levelname``, ``name``, ``process``,
``created``) and the request context under ``context``. Those map onto the
contract (``loglevel``/``level``, ``logger``, ``pid``, ``@timestamp``,
``request_id``, ``global_request_id``, ...) so ``request_id:req-...`` finds a
JSON line like a text one. Other JSON lines keep their keys as fields, with
the usual names (``msg``, ``level``, ``time``, ``host``) mapped the same way.

Input is bounded where it enters: nesting deeper than ``MAX_DEPTH`` is kept
as JSON text, fields past ``MAX_FIELDS`` are left out (tag
``_jsonfieldlimit``), and an integer no store can hold (beyond 64 bits)
stays text, so one odd line never fails the batch it travels in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

__all__ = ["FIELD_LIMIT_TAG", "JSON_FAILURE_TAG", "MAX_DEPTH", "MAX_FIELDS", "bounded", "decode_object",
           "event_fields"]

JSON_FAILURE_TAG = "_jsonparsefailure"
FIELD_LIMIT_TAG = "_jsonfieldlimit"
MAX_DEPTH = 8
MAX_FIELDS = 256
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1

#: Contract fields a JSON object may not set as they are: its own keys go to ``<name>_raw``.
_RESERVED = frozenset({"id", "@timestamp", "tags", "type", "component", "path"})
#: Common names of the usual fields, first found wins (oslo.log's first).
_ALIASES = {
    "message": ("message", "msg", "log"),
    "loglevel": ("levelname", "level", "severity", "lvl", "log.level"),
    "logger": ("name", "logger", "logger_name"),
    "pid": ("process", "pid"),
    "host": ("hostname", "host"),
    "timestamp": ("asctime", "@timestamp", "timestamp", "time", "ts"),
}
#: oslo.context's to_dict() names (and nova's additions) -> contract names.
_CONTEXT = {"request_id": "request_id", "global_request_id": "global_request_id", "user_id": "user_id",
            "user": "user_id", "project_id": "project_id", "tenant": "project_id", "project": "project_id",
            "domain": "domain_id", "user_domain": "user_domain_id", "project_domain": "project_domain_id",
            "resource_uuid": "instance_id"}
#: oslo.log keys with no use once mapped (the raw format string and its args, derived times).
_OSLO_NOISE = frozenset({"msg", "args", "levelno", "msecs", "relative_created", "created", "asctime"})


class _Budget:
    __slots__ = ("left", "cut")

    def __init__(self, left: int) -> None:
        self.left = left
        self.cut = False


def bounded(value: Any, depth: int = 0, budget: _Budget | None = None) -> Any:
    """``value`` with every bound applied (depth, field count, 64-bit integers, finite floats)."""
    budget = budget or _Budget(MAX_FIELDS)
    cls = value.__class__
    if cls is dict:
        if depth >= MAX_DEPTH:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        out = {}
        for k, v in value.items():
            if budget.left <= 0:
                budget.cut = True
                break
            budget.left -= 1
            out[str(k)] = bounded(v, depth + 1, budget)
        return out
    if cls is list:
        if depth >= MAX_DEPTH:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        return [bounded(v, depth + 1, budget) for v in value[:MAX_FIELDS]]
    if cls is int and not _INT_MIN <= value <= _INT_MAX:
        return str(value)
    if cls is float and value - value != 0:
        return str(value)
    return value


def decode_object(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The bounded object a line holds, and tags; (None, [_jsonparsefailure]) when it holds none."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        obj = None
    if obj.__class__ is not dict:
        return None, [JSON_FAILURE_TAG]
    budget = _Budget(MAX_FIELDS)
    out = bounded(obj, 0, budget)
    return out, ([FIELD_LIMIT_TAG] if budget.cut else [])


def _first(obj: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    for n in names:
        v = obj.get(n)
        if v not in (None, ""):
            return n, v
    return None


def event_fields(obj: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    """Captures for the Event (as grok would give them) and the instant the record names, if any."""
    oslo = "levelname" in obj and "name" in obj
    caps: dict[str, Any] = {}
    used: set[str] = set()
    for target, names in _ALIASES.items():
        found = _first(obj, names)
        if found is not None:
            used.add(found[0])
            value = found[1]
            if target != "pid" and not isinstance(value, str):
                value = orjson.dumps(value).decode()  # these are text fields of the contract
            caps[target] = value
    when: datetime | None = None
    created = obj.get("created")
    if isinstance(created, (int, float)) and not isinstance(created, bool) and 0 < created < 1e11:
        when = datetime.fromtimestamp(created, timezone.utc)
    context = obj.get("context")
    if isinstance(context, dict):
        used.add("context")
        for key, target in _CONTEXT.items():
            v = context.get(key)
            if isinstance(v, str) and v and v != "-":
                caps.setdefault(target, v)
    extra = obj.get("extra")
    if isinstance(extra, dict) and oslo:
        used.add("extra")
        inst = extra.get("instance")
        instance = extra.get("instance_uuid") or (inst.get("uuid") if isinstance(inst, dict) else None)
        if isinstance(instance, str) and instance:
            caps.setdefault("instance_id", instance)
        for k, v in extra.items():
            if k not in ("instance", "instance_uuid"):
                caps.setdefault(k, v)
    traceback = obj.get("traceback")
    for k, v in obj.items():
        if k in used or (oslo and k in _OSLO_NOISE) or v is None:
            continue
        caps.setdefault(f"{k}_raw" if k in _RESERVED else k, v)
    if isinstance(traceback, str) and traceback and isinstance(caps.get("message"), str):
        caps["message"] = f"{caps['message']}\n{traceback}"  # as the text formatter prints it
    return caps, when
