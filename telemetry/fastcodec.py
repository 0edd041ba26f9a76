"""Hand-written decoders of bus records: what the models give, without them.

Validation was most of the hot paths' cost (the agent's entries at the parse
stage, each event at every consumer behind a broker, each sample at the rule
stage), so well-formed records take these instead. Each makes every check its
model makes and declines (None) anything unusual, so the model, and its error
for the dead-letter reason, still decides those. ``tests/test_fast_decoders.py``
holds each equal to its model on arbitrary input.
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import islice
from typing import Any, TypeVar, overload

import msgpack
import orjson

from telemetry.models import (
    _PLAIN, _RAWLOG_FIELDS, CounterType, Event, RawLog, Record, _event_id, _set_dict, _set_extra, _set_fields_set,
    _set_private, decode, derived_id, iso_utc,
)
from telemetry.timeutil import parse_timestamp, utcnow

R = TypeVar("R", bound=Record)


def _wire_map(raw: bytes) -> dict[str, Any] | None:
    """A bus message's map (JSON or msgpack), or None: the fast decoders' common first step."""
    try:
        d = orjson.loads(raw) if raw[:1] == b"{" else msgpack.unpackb(raw, raw=False)
    except Exception:
        return None
    return d if d.__class__ is dict else None


#: A RawLog's values in its fields' order (``raw_log``'s keywords), ``extra`` last (None: none).
RawValues = tuple[str, str, str, str, str, int, int, list[str], datetime, list[str], "dict[str, Any] | None"]


def fast_rawlog(raw: bytes) -> RawLog | None:
    """``decode(RawLog, raw)`` without validation, or None where the model must decide.

    The agent sends every log entry as a RawLog and the parse stage decodes each:
    validation was a large share of its time. Every check the model makes is
    made here (``rawlog_values``); anything unusual declines, so the model (and its
    error, for the dead-letter reason) handles it. ``tests/test_fast_decoders.py``
    holds the two equal on arbitrary input.
    """
    values = rawlog_values(raw)
    if values is None:
        return None
    id_, host, path, component, type_, offset, inode, lines, read_at, tags, extra = values
    return raw_log(id=id_, host=host, path=path, component=component, type=type_, offset=offset, inode=inode,
                   lines=lines, read_at=read_at, tags=tags, extra=extra)


def raw_log(*, id: str, host: str, path: str, component: str, type: str, offset: int, inode: int,
            lines: list[str], read_at: datetime, tags: list[str], extra: dict[str, Any] | None = None) -> RawLog:
    """The RawLog validation would build from these values, without validating them.

    For the agent's hot path, where every value is ours and already typed
    (``str``, ``int``, ``list[str]``, an aware UTC ``datetime``): validating
    each entry was its largest cost. ``tests/test_models.py`` holds the result
    equal, field for field and byte for byte, to the validated record.
    """
    common = {"id": id, "host": host, "path": path, "component": component, "type": type, "offset": offset,
              "inode": inode, "lines": lines, "read_at": read_at, "tags": tags}
    return raw_logs(common, [(id, offset, lines, tags)], extra)[0]


def raw_logs(common: dict[str, Any], entries: list[tuple[str, int, list[str], list[str]]],
             extra: dict[str, Any] | None = None) -> list[RawLog]:
    """``raw_log`` for the entries of one read of one file, (id, offset, lines, tags) each: the values
    they share (``common``, every field in the model's order) given once, not as eleven keyword
    arguments per entry. An empty id is derived as the model derives it; each record gets its own
    copy of ``extra``. Here, not in the model, to be compiled: the agent builds one per log entry."""
    new = RawLog.__new__
    # One set of the names every record of the read has set, shared: pydantic only ever adds to it (an
    # attribute assigned later, which it holds already), and a set per record was a third of the cost
    # of building them and of freeing them once shipped (0.74 µs a record against 1.22, with the
    # slots set through their descriptors rather than object.__setattr__).
    names = set(_RAWLOG_FIELDS)
    if extra:
        names.update(extra)  # (``frozenset | dict.keys()`` is a set, not the frozenset mypy says: compiled, a TypeError)
    host, inode = common["host"], common["inode"]
    out = []
    for id_, offset, lines, tags in entries:
        obj = new(RawLog)
        d = dict(common)
        d["id"] = id_ or derived_id("rawlog", host, inode, offset)
        d["offset"] = offset
        d["lines"] = lines
        d["tags"] = tags
        _set_dict(obj, d)
        _set_fields_set(obj, names)
        _set_extra(obj, dict(extra) if extra else {})
        _set_private(obj, None)
        out.append(obj)
    return out


def rawlog_values(raw: bytes) -> RawValues | None:
    """The values ``fast_rawlog`` builds its RawLog of (None where the model must decide).

    A parse worker behind a broker parses these as they are (``Parser.parse_values``): building
    the model only to read its values back was a fifth of decoding each entry.
    """
    d = _wire_map(raw)
    if d is None:
        return None
    get = d.get
    # Written out, not looped over nor tested by generators: this took four of a parse worker's
    # microseconds a line behind a broker, against one for the JSON itself.
    host, path, component, type_, id_ = get("host"), get("path"), get("component", ""), get("type", ""), get("id", "")
    offset, inode, lines, tags = get("offset", 0), get("inode", 0), get("lines"), get("tags", [])
    if (host.__class__ is not str or path.__class__ is not str or component.__class__ is not str
            or type_.__class__ is not str or id_.__class__ is not str or offset.__class__ is not int
            or inode.__class__ is not int or lines.__class__ is not list or tags.__class__ is not list):
        return None
    for x in lines:
        if x.__class__ is not str:
            return None
    for x in tags:
        if x.__class__ is not str:
            return None
    if "read_at" in d:
        try:
            read_at = _read_at(d["read_at"])
        except (ValueError, TypeError, OverflowError, OSError):
            return None
    else:
        read_at = utcnow()
    # Most entries have no field beyond the model's: a subset test in C, not a dict built to be empty.
    extra = None if d.keys() <= _RAWLOG_FIELDS else {k: v for k, v in d.items() if k not in _RAWLOG_FIELDS}
    return id_, host, path, component, type_, offset, inode, lines, read_at, tags, extra


_last_read_at: tuple[Any, datetime | None] = (None, None)


def _read_at(value: Any) -> datetime:
    """``parse_timestamp`` of a RawLog's read_at, the last one kept: the entries of one read share it."""
    global _last_read_at
    last = _last_read_at
    if value.__class__ is str and last[0] == value and last[1] is not None:
        return last[1]
    when = parse_timestamp(value)
    _last_read_at = (value, when)
    return when


@overload
def decode_record(cls: type[RawLog], raw: bytes, shared: bool = True) -> RawLog: ...
@overload
def decode_record(cls: type[R], raw: bytes, shared: bool = True) -> R | dict[str, Any]: ...


def decode_record(cls: type[R], raw: bytes, shared: bool = True) -> R | dict[str, Any]:
    """The record of bus bytes: through its hand-written decoder where there is one, else the model,
    whose error for bad input names the dead-letter reason (``reject_reason``), so every reader of
    bus bytes gives the same one.

    An event comes as its contract dict, the form the parse stage hands over in this process
    (every consumer of the events topic reads either); ``shared``, the one dict this process's
    consumers share (``_SharedEvents``), else a dict of its own (a process with one consumer).
    """
    fast: Any = None
    if cls is RawLog:
        fast = fast_rawlog(raw)
    elif cls is Event:
        fast = _SHARED_EVENTS.get(raw) if shared else fast_event(raw)
    return fast or decode(cls, raw)


class _SharedEvents:
    """The events this process decoded lately, by their bytes.

    A server behind a broker receives each event once per consumer group (the rules, the /metrics
    exporter, each sink), the same bytes each time, and decoding them was a third of its main
    thread. The decoded dict is shared among the groups as the in-process bus shares it: every
    consumer only reads it. Two generations of ``size`` bound the memory (a few thousand dicts);
    the groups read the same events within a few batches of each other.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self._new: dict[bytes, dict[str, Any]] = {}
        self._old: dict[bytes, dict[str, Any]] = {}

    def get(self, raw: bytes) -> dict[str, Any] | None:
        ev = self._new.get(raw) or self._old.get(raw)
        if ev is not None:
            self.hits += 1
            return ev
        ev = fast_event(raw)
        if ev is not None:
            new = self._new
            new[raw] = ev
            if len(new) >= self.size:
                self._old, self._new = new, {}
        return ev


_SHARED_EVENTS = _SharedEvents(4096)


#: How event_dict checks each contract key; a value failing its check needs validation.
_EVENT_CHECK = {"id": "str", "@timestamp": "ts", "host": "str", "component": "str", "type": "str",
                "level": "opt", "logger": "opt", "pid": "pid", "request_id": "opt", "user_id": "opt",
                "project_id": "opt", "instance_id": "opt", "message": "str", "tags": "tags"}
assert list(_EVENT_CHECK) == [f.alias or n for n, f in Event.model_fields.items()]
_EVENT_TEMPLATE: dict[str, Any] = {k: ("" if c == "str" else None) for k, c in _EVENT_CHECK.items()}
_STR_KEYS = tuple(k for k, c in _EVENT_CHECK.items() if c == "str")
_OPT_KEYS = tuple(k for k, c in _EVENT_CHECK.items() if c == "opt")


def event_dict(data: dict[str, Any], with_id: bool = True, written: str | None = None, from_json: bool = False
               ) -> dict[str, Any] | None:
    """``Event.model_validate(data).to_dict()`` without the model, for data that needs no conversion.

    The parse stage and ``telemetry parse`` produce one Event per log entry, and
    building and serialising the model was most of their cost; this builds the
    JSON-ready dict (contract names, field order, extras after) directly.
    ``data`` must carry an aware UTC ``@timestamp`` and typed values (``pid`` may
    be digits, as grok captures it); otherwise it returns None and the caller
    validates. Without ``with_id`` the ``id`` key is left out (and not computed).
    ``written`` is the time as ``iso_utc`` would write it, when the caller read it so
    (``fast_event``): it is then not formatted again.
    The parse tests hold the output equal to the validated Event's.

    ``from_json``: ``data`` is a map JSON gave, whose values the model keeps as they are (orjson reads
    neither NaN nor infinities): the extras are not checked one by one.
    """
    # The contract keys first, in the model's order, with their defaults; the extras after, in data's
    # order: one merge in C, then only the values that can be wrong are looked at.
    out = {**_EVENT_TEMPLATE, **data}
    for k in _STR_KEYS:
        if out[k].__class__ is not str:
            return None
    for k in _OPT_KEYS:
        v = out[k]
        if v is not None and v.__class__ is not str:
            return None
    pid = out["pid"]
    if pid is not None and pid.__class__ is not int:
        if pid.__class__ is not str or not (pid.isascii() and pid.isdigit() and len(pid) < 19):
            return None
        out["pid"] = int(pid)
    tags = out["tags"]
    if tags is None:
        if "tags" in data:
            return None
        out["tags"] = []
    elif tags.__class__ is not list or (tags and not all(t.__class__ is str for t in tags)):
        return None
    else:
        out["tags"] = list(tags)
    if not from_json:
        for v in islice(out.values(), len(_EVENT_TEMPLATE), None):
            if v.__class__ is not str and not _json_plain(v):
                return None
    ts = out["@timestamp"]
    if ts.__class__ is not datetime or ts.tzinfo is not timezone.utc:
        return None  # None: the default (now) is the model's to give
    if not with_id:
        del out["id"]
    elif not out["id"]:
        out["id"] = _event_id(out["host"], ts, out["message"])
    out["@timestamp"] = written or iso_utc(ts)
    return out


def _json_plain(value: Any) -> bool:
    """Values JSON mode leaves as they are: text, ints, finite floats, None, lists and dicts of them."""
    cls = value.__class__
    if cls in _PLAIN:
        return True
    if cls is float:
        return value - value == 0  # not inf or nan
    if cls is dict:
        return all(k.__class__ is str and _json_plain(v) for k, v in value.items())
    if cls is list:
        return all(_json_plain(v) for v in value)
    return False


def fast_event(raw: bytes) -> dict[str, Any] | None:
    """``decode(Event, raw).to_dict()`` without the model, or None where the model must decide.

    A server behind a broker decodes each event once per consumer group (store, rules,
    exporter, sinks): through the model that was validation and a dump every time, a third
    of a split server's CPU. An event as the parse stage publishes it (a UTC time, typed
    values) needs neither; ``event_dict`` makes the same checks as for the parser's data.
    ``tests/test_fast_decoders.py`` holds the two equal, key order included, on arbitrary input.
    """
    d = _wire_map(raw)
    if d is None:
        return None
    from_json = raw[:1] == b"{"  # as _wire_map read it: orjson reads neither NaN nor infinities
    ts = d.get("@timestamp")
    if ts.__class__ is not str:
        return None
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if when.tzinfo is not timezone.utc:  # another zone, or none: the model's rules apply
        return None
    canonical = (ts[-1] == "Z" and ts[4] == "-" and ts[7] == "-" and ts[10] == "T" and ts[13] == ":"
                 and ts[16] == ":" and (len(ts) == 27 and ts[19] == "." if when.microsecond else len(ts) == 20))
    d["@timestamp"] = when
    return event_dict(d, written=ts if canonical else None,  # as iso_utc writes it (the parse stage did)
                      from_json=from_json)


_COUNTER_TYPES = frozenset(t.value for t in CounterType)


_OPTIONAL_TEXT = ("project_id", "user_id", "message_signature")


def fast_sample_doc(raw: bytes) -> dict[str, Any] | None:
    """``sample_doc(decode(Sample, raw))`` without the model, or None where the model must decide.

    At 10,000 samples/s validation was most of the rule stage's time. Every
    check the model would make is made here; anything unusual declines, so the
    model (and its error, for the dead-letter reason) handles it.
    ``tests/test_models.py`` holds the two equal on arbitrary input.
    """
    d = _wire_map(raw)
    if d is None:
        return None
    name, volume, rid, ctype = d.get("counter_name"), d.get("counter_volume"), d.get("resource_id"), d.get("counter_type")
    if (name.__class__ is not str or rid.__class__ is not str or volume.__class__ not in (int, float)
            or ctype.__class__ is not str or ctype not in _COUNTER_TYPES or d.get("counter_unit", "").__class__ is not str):
        return None
    for key in _OPTIONAL_TEXT:
        v = d.get(key)
        if v is not None and v.__class__ is not str:
            return None
    source = d.get("source", "openstack")
    meta = d.get("resource_metadata", {})
    mid = d.get("message_id", "")
    if source.__class__ is not str or meta.__class__ is not dict or mid.__class__ is not str:
        return None
    try:
        volume = float(volume)
        when = parse_timestamp(d["timestamp"]) if "timestamp" in d else utcnow()
    except (ValueError, TypeError, OverflowError, OSError):
        return None
    if not mid:
        mid = derived_id("sample", name, rid, when.isoformat(), source)
    return {"counter_name": name, "counter_type": ctype, "counter_unit": d.get("counter_unit", ""),
            "counter_volume": volume, "resource_id": rid,
            "project_id": d.get("project_id"), "user_id": d.get("user_id"), "source": source,
            "resource_metadata": meta, "message_id": mid, "ts": when.timestamp()}
