"""The event of a matched entry of a plain grok type, built as one dict.

The general path (``Parser._data`` then ``fastcodec.event_dict``) builds the
event's data in one dict, for normalisation and the steps to work on, then
copies it into the contract's order and checks every value, because a step or
an operator's ``--pattern`` may have put anything there. For most entries
none of that can happen: a built-in or library type whose expressions capture
text (or numbers grok converted and range-checked), no steps, no syslog header.
Which types those are is known when the parser is built (``quick_types``);
for them the event is written once, in its final order, and only what the
compile-time facts do not settle is checked per entry. That took a quarter off
``Parser.parse_dict``'s time per oslo line and a fifth off the parse worker's (docs/parsing.md).

Anything unusual declines (None) and the general path decides, from the same
captures (grok is never run twice): ``tests/test_parse_quick.py`` holds the
two equal, key order included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any

from telemetry.fastcodec import _EVENT_TEMPLATE, _OPT_KEYS, _STR_KEYS
from telemetry.models import _event_id, iso_utc
from telemetry.parse.dates import read_log_time, utc_written
from telemetry.parse.grok import CONVERSION_FAILURES, INT_MAX, Grok
from telemetry.parse.normalise import normalise_fields

__all__ = ["quick_event", "quick_grok"]

#: Captures the general path treats apart (tags, the time, the id, the conversion failures).
_RESERVED = frozenset({"tags", "@timestamp", "id", "pid_raw", CONVERSION_FAILURES})
#: Fields the event holds as text (or None): a capture grok converts to a number must not land there.
#: ``program`` and ``logsource`` become the component and the host.
_TEXT = frozenset({*_STR_KEYS, *_OPT_KEYS, "program", "logsource"})
#: Fields that hold one value: no name of them may be captured by several groups (a list when two take part).
_ONE_VALUE = _TEXT | {"pid"}
#: Fields an entry's own fields (the file's host, component, path) may set here; others decline.
_FIELD_UNSAFE = frozenset({"@timestamp", "id", "pid"})

_WITH_ID = dict(_EVENT_TEMPLATE)
_WITHOUT_ID = {k: v for k, v in _EVENT_TEMPLATE.items() if k != "id"}


def quick_grok(groks: Iterable[Grok]) -> bool:
    """Whether captures of these expressions need no check per entry: flat names, each one's value text
    or a number grok converted (in range, finite), and none where the event holds text or its own
    bookkeeping."""
    for g in groks:
        if not g._fast or _RESERVED.intersection(g._names):
            return False
        if any(name in _TEXT for name, _ in g._convs):
            return False
        # A name several groups capture holds a list when more than one took part (Logstash's way).
        if g._dups and any(g._names.count(name) > 1 for name in _ONE_VALUE.intersection(g._names)):
            return False
    return True


def quick_event(text: str, canonical: str, caps: Mapping[str, Any], fields: Mapping[str, Any] | None,
                event_id: str, now: datetime | None, with_id: bool, default_tz: tzinfo) -> dict[str, Any] | None:
    """``event_dict`` of what ``Parser._data`` makes of these captures (a match of a quick type), or None
    where the general path must decide. ``caps`` is only read."""
    if CONVERSION_FAILURES in caps or event_id.__class__ is not str:
        return None
    out = {**(_WITH_ID if with_id else _WITHOUT_ID), "message": text, "type": canonical}
    tags: list[Any] = []
    has_path = False
    if fields:
        for k, v in fields.items():
            if k == "tags":
                if v.__class__ is not list or (v and not all(t.__class__ is str for t in v)):
                    return None
                tags = [*v]
            elif v is not None and v != "":
                if v.__class__ is not str or k in _FIELD_UNSAFE:
                    return None
                out[k] = v
                has_path = has_path or k == "path"
    if has_path and "path" in caps:
        out["log_path"] = out["path"]  # an access line's request path: the file's is kept beside it
    out.update(caps)
    out["tags"] = tags
    raw = caps.get("timestamp")
    written = None
    when: datetime | None = None
    if raw.__class__ is str:
        # The instant itself is needed only to derive an id; its text is what the event holds.
        if default_tz is timezone.utc and not (with_id and not event_id):
            written = utc_written(raw)
        if written is None:
            when, written = read_log_time(raw, default_tz, now)
            if when is None:
                return None  # tagged _dateparsefailure there
    else:
        when = now or datetime.now(timezone.utc)
    if when is not None and (when.__class__ is not datetime or when.tzinfo is not timezone.utc):
        return None
    if caps:
        normalise_fields(out, caps, canonical)
    pid = out["pid"]
    if pid is not None:
        if pid.__class__ is str and pid.isascii() and pid.isdigit() and len(pid) < 19:
            out["pid"] = int(pid)
        elif pid.__class__ is not int or not -INT_MAX <= pid <= INT_MAX:
            return None
    if with_id:
        if not event_id:
            assert when is not None  # read above whenever an id is to be derived
            event_id = _event_id(out["host"], when, out["message"])
        out["id"] = event_id
    if written is None:
        assert when is not None  # only the usual shape's text comes without it
        written = iso_utc(when)
    out["@timestamp"] = written
    return out
