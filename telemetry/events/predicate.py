"""The same query language, evaluated on one event in memory.

The event store answers a query with SQL (``sql.py``); log and event alarms
need a yes/no answer per event as it streams past, before it is stored. Both
compile the ONE syntax tree from ``query.py``, and this module mirrors the SQL
semantics so that an alarm on ``level:ERROR AND component:nova`` fires on
exactly the events ``telemetry search`` shows for it:

* a field term is a case-insensitive equality (any element of a list);
  numbers compare as numbers; ``*`` and ``?`` are wildcards;
* free text (no field, or ``message``) matches whole words of the message in
  order, as FTS5's unicode61 tokenizer splits them; ``word*`` is a prefix;
* ranges compare numbers as numbers, times as times, other text as text;
* ``NOT`` keeps events where the field is missing, as Lucene does.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from telemetry.events.query import And, Exists, Node, Not, Or, QueryError, Range, Term, parse_query
from telemetry.events.times import parse_time_bound
from telemetry.timeutil import parse_timestamp

__all__ = ["Predicate", "compile_predicate", "equality_key", "lookup"]

Predicate = Callable[[Mapping[str, Any]], bool]

TIME_FIELDS = ("@timestamp", "timestamp")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_WORD = re.compile(r"\w+")


def lookup(event: Mapping[str, Any], field: str) -> Any:
    """A field by its name, then by dotted path (``payload.state``, ``http.status``)."""
    if field in event:
        return event[field]
    if field in TIME_FIELDS:
        other = TIME_FIELDS[1] if field == TIME_FIELDS[0] else TIME_FIELDS[0]
        if other in event:
            return event[other]
    cur: Any = event
    for part in field.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _values(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.match(v.strip()):
        return float(v)
    return None


def _wild(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern.casefold()), re.DOTALL)


def _contains_words(hay: list[str], needle: list[str], prefix_last: bool) -> bool:
    n = len(needle)
    if n == 0:
        return False
    for i in range(len(hay) - n + 1):
        if hay[i:i + n - 1] != needle[:-1]:
            continue
        last = hay[i + n - 1]
        if last == needle[-1] or (prefix_last and last.startswith(needle[-1])):
            return True
    return False


#: The last message folded and split: every free-text term of every log alarm reads the same
#: event's message in turn, so it is folded once per event, not once per term. One tuple,
#: replaced whole, so a reader in another thread sees a consistent pair.
_last: tuple[Any, str, list[str] | None] = (None, "", None)


def _folded(message: Any) -> tuple[str, list[str] | None]:
    last = _last
    if last[0] is message and message is not None:
        return last[1], last[2]
    text = message if message.__class__ is str else str(message or "")
    folded = text.casefold()
    _remember(message, folded, None)
    return folded, None


def _remember(message: Any, folded: str, words: list[str] | None) -> None:
    global _last
    _last = (message, folded, words)


def _message_words(message: Any, folded: str, words: list[str] | None) -> list[str]:
    if words is None:
        words = _WORD.findall(folded)
        _remember(message, folded, words)
    return words


def _phrase(needle: list[str], prefix_last: bool) -> Predicate:
    """Words in order, as FTS5 matches a phrase; decided by substring tests alone for most events.

    Every word of the message is a substring of the folded message, so a needle word that
    is not a substring rules the event out without splitting the message into words.
    """
    if not needle:
        return lambda e: False
    single = needle[0] if len(needle) == 1 and not prefix_last else None

    def test(e: Mapping[str, Any]) -> bool:
        message = e.get("message")
        folded, words = _folded(message)
        for w in needle:
            if w not in folded:
                return False
        words = _message_words(message, folded, words)
        if single is not None:
            return single in words
        return _contains_words(words, needle, prefix_last)

    return test


def _text(t: Term) -> Predicate:
    """Free text over ``message``, as the FTS5 index answers it."""
    if not t.wildcard:
        return _phrase(_words(t.value), False)
    body = t.value[:-1]
    if t.value.endswith("*") and body and not re.search(r"[*?\\]", body):
        return _phrase(_words(body), True)
    rx = _wild(f"*{t.value}*")
    return lambda e: rx.match(_folded(e.get("message"))[0]) is not None


def _as_time(v: Any) -> datetime | None:
    try:
        return parse_timestamp(v)
    except ValueError:
        return None


def _time_bound(value: str, text: str) -> datetime:
    try:
        return parse_time_bound(value)
    except ValueError as exc:
        raise QueryError(str(exc), max(text.find(value), 0), text) from None


def _term(t: Term, text: str) -> Predicate:
    name = t.field
    if name is None or name == "message":
        return _text(t)
    if name in TIME_FIELDS:
        if t.wildcard:
            raise QueryError(f"wildcards do not apply to {name}; use a range such as [now-1h TO now]",
                             max(text.find(t.value), 0), text)
        when = _time_bound(t.value, text)
        return lambda e: _as_time(lookup(e, name)) == when
    if t.wildcard:
        rx = _wild(t.value)
        return lambda e: any(rx.match(str(v).casefold()) for v in _values(lookup(e, name)))
    want = t.value.casefold()
    num = _number(t.value)

    def equal(v: Any) -> bool:
        if num is not None and _number(v) == num:
            return True
        return str(v).casefold() == want

    if num is not None:
        return lambda e: any(equal(v) for v in _values(lookup(e, name)))

    def text_equal(e: Mapping[str, Any]) -> bool:
        """The usual case (``level:ERROR``): a text value at the top level, one fold and compare."""
        v = e[name] if name in e else lookup(e, name)
        if v.__class__ is str:
            return v.casefold() == want
        return any(equal(x) for x in _values(v))

    return text_equal


def _range(r: Range, text: str) -> Predicate:
    name = r.field
    lo: Any
    hi: Any
    if name in TIME_FIELDS:
        lo = _time_bound(r.low, text) if r.low is not None else None
        hi = _time_bound(r.high, text) if r.high is not None else None
        conv: Callable[[Any], Any] = _as_time
    elif all(b is None or _NUMBER.match(b) for b in (r.low, r.high)):
        lo = float(r.low) if r.low is not None else None
        hi = float(r.high) if r.high is not None else None
        conv = _number
    else:
        lo, hi, conv = r.low, r.high, lambda v: None if v is None else str(v)

    def inside(v: Any) -> bool:
        x = conv(v)
        if x is None:
            return False
        if lo is not None and (x < lo or (x == lo and not r.include_low)):
            return False
        return not (hi is not None and (x > hi or (x == hi and not r.include_high)))

    return lambda e: any(inside(v) for v in _values(lookup(e, name)))


def _exists(name: str) -> Predicate:
    return lambda e: any(v not in ("", [], {}) for v in _values(lookup(e, name)))


def _compile(n: Node, text: str) -> Predicate:
    if isinstance(n, And):
        parts = [_compile(i, text) for i in n.items]
        if len(parts) == 2:  # the common shape, without a generator per event
            a, b = parts
            return lambda e: a(e) and b(e)
        return lambda e: all(p(e) for p in parts)
    if isinstance(n, Or):
        parts = [_compile(i, text) for i in n.items]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) or b(e)
        return lambda e: any(p(e) for p in parts)
    if isinstance(n, Not):
        inner = _compile(n.item, text)
        return lambda e: not inner(e)
    if isinstance(n, Exists):
        return _exists(n.field)
    if isinstance(n, Range):
        return _range(n, text)
    return _term(n, text)


def compile_predicate(text: str) -> Predicate:
    """``text`` as a predicate on an event dict; raises QueryError naming the position.

    Relative times (``now-15m``) are fixed when the query is compiled; an
    alarm's own window, not its query, should bound time.
    """
    node = parse_query(text or "")
    if node is None:
        return lambda e: True
    return _compile(node, text)


def equality_key(text: str) -> tuple[str, str] | None:
    """A ``field:value`` text equality every event the query matches must satisfy, folded; else None.

    The rule engine indexes log alarms by it (``level:ERROR AND component:nova`` is looked
    at only for events whose level folds to ``error``), so an event costs what the alarms
    on its own level or component cost, not what all of them do. Only a top-level term
    qualifies, and only one that ``_term`` decides by folded text alone: no wildcard, not
    a number (those compare as numbers), not a time, not free text.
    """
    node = parse_query(text or "")
    for item in node.items if isinstance(node, And) else (node,):
        if (isinstance(item, Term) and item.field is not None and item.field != "message"
                and item.field not in TIME_FIELDS and not item.wildcard and _number(item.value) is None):
            return item.field, item.value.casefold()
    return None


def folded_values(event: Mapping[str, Any], field: str) -> set[str]:
    """The folded text of a field's values, as ``_term`` compares them (for ``equality_key``)."""
    v = event[field] if field in event else lookup(event, field)
    if v.__class__ is str:
        return {v.casefold()}
    return {str(x).casefold() for x in _values(v)}
