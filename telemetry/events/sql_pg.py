"""Translation of a parsed query into a PostgreSQL WHERE clause over the ``events`` table.

The same syntax tree as the SQLite compiler (``sql.py``) and the in-memory
predicate (``predicate.py``), with the same meaning, so a search answers alike
on either backend and an alarm fires on what the search shows:

* Text columns compare case-insensitively (SQLite declares them NOCASE):
  through ``lower()``, on an expression index of the first ``KEY_CHARS``
  characters, so a pathological value longer than a B-tree entry can hold is
  still stored and still found.
* Free text uses PostgreSQL's own text search: a generated ``tsvector`` of
  the message under a GIN index. The message is first cut into runs of
  letters and digits, as FTS5's unicode61 tokenizer (and the predicate) cut
  it, and indexed with the ``simple`` configuration (lower case, no stemming,
  no stop words), so ``example`` finds ``cn01.example.org`` and ``"failed to
  spawn"`` is a phrase query (``phraseto_tsquery``); ``spaw*`` a prefix.
* Other fields live in a ``jsonb`` column, reached with a JSON path whose
  ``[*]`` treats a scalar as a one-element list, as SQLite's ``json_each`` does.

Every value travels as a bound parameter, the JSON path included (built from
a field name the parser already restricted to ``[A-Za-z0-9_.@-]``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from telemetry.events.query import QueryError, Range, Term
from telemetry.events.sql import (
    _NUMBER, TEXT_COLUMNS, TIME_FIELDS, Compiled, Dialect, _json_path, _like, _time, compile_tree, time_range,
)

__all__ = ["FTS_CHARS", "KEY_CHARS", "TSVECTOR", "compile_query", "key"]

#: Characters of a text column that its index holds (a B-tree entry is at most ~2.7 kB).
KEY_CHARS = 128
#: Characters of a message that the text-search index holds (a tsvector is at most 1 MB).
FTS_CHARS = 131_072
#: A message (or a query's words) as runs of letters and digits, the way FTS5's unicode61 reads it.
_WORDS = "regexp_replace({x}, '[^[:alnum:]]+', ' ', 'g')"
TSVECTOR = f"to_tsvector('simple', {_WORDS.format(x=f'left(message, {FTS_CHARS})')})"
#: A number written as text, bounded so the cast to numeric can never overflow.
_NUMERIC_TEXT = r"'^\s*[+-]?(\d{1,200}(\.\d{0,200})?|\.\d{1,200})([eE][+-]?\d{1,4})?\s*$'"
_WORD_CHAR = re.compile(r"[^\W_]")


def key(x: str) -> str:
    """The indexed form of a text column (or of a parameter compared with one)."""
    return f"left(lower({x}), {KEY_CHARS})"


def compile_query(text: str | None) -> Compiled:
    """Parse and translate; raises QueryError naming the position of the problem."""
    return compile_tree(text, POSTGRESQL)


def _text_match(t: Term, p: list[Any]) -> str:
    """Free text over ``message``: the tsvector for words, phrases and trailing ``*``; ILIKE for the rest."""
    words = f"phraseto_tsquery('simple', {_WORDS.format(x='%s')})"
    if not t.wildcard:
        if not _WORD_CHAR.search(t.value):
            return "false"  # no word to look for (FTS5 and the predicate match nothing either)
        p.append(t.value)
        return f"(e.tsv @@ {words})"
    body = t.value[:-1]
    if t.value.endswith("*") and body and not re.search(r"[*?\\]", body) and _WORD_CHAR.search(body):
        p.append(body)
        return f"(e.tsv @@ ({words}::text || ':*')::tsquery)"  # the last word a prefix
    p.append("%" + _like(t.value) + "%")
    return "(e.message ILIKE %s ESCAPE '\\')"


def _numeric(x: str) -> str:
    """``x`` (text) as a number when it is written as one, else NULL."""
    return f"(CASE WHEN {x} ~ {_NUMERIC_TEXT} THEN ({x})::numeric END)"


def _json_value(name: str, p: list[Any], cond: str, values: list[Any]) -> str:
    """Any value of a field (each element of a list) satisfies ``cond`` on ``v`` (jsonb) with ``values``."""
    if name == "tags":
        p.extend(values)
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements(e.tags) v WHERE {cond})"
    p.extend([_json_path(name) + "[*]", *values])
    return f"EXISTS (SELECT 1 FROM jsonb_path_query(e.fields, %s::jsonpath) v WHERE {cond})"


def _term(t: Term, p: list[Any], text: str) -> str:
    name = t.field
    if name is None or name == "message":
        return _text_match(t, p)
    value = t.value.upper() if name == "level" and not t.wildcard else t.value
    if name in TIME_FIELDS:
        if t.wildcard:
            _time_wildcard(t, text)
        p.append(_time(t.value, text))
        return "(e.ts = %s)"
    if name == "pid":
        if t.wildcard:
            p.append(_like(value))
            return "(e.pid::text ILIKE %s ESCAPE '\\')"
        if not _finite(value):
            return "false"
        p.append(value)
        return "(e.pid = %s::numeric)"
    if name in TEXT_COLUMNS:
        if t.wildcard:
            p.append(_like(value))
            return f"(e.{name} ILIKE %s ESCAPE '\\')"
        p.extend([value, value])
        return f"({key(f'e.{name}')} = {key('%s::text')} AND lower(e.{name}) = lower(%s::text))"
    if t.wildcard:
        return _json_value(name, p, "(v #>> '{}') ILIKE %s ESCAPE '\\'", [_like(value)])
    if _finite(value):
        return _json_value(name, p, "(v = to_jsonb(%s::numeric) OR lower(v #>> '{}') = lower(%s::text))",
                           [value, value])
    return _json_value(name, p, "lower(v #>> '{}') = lower(%s::text)", [value])


def _finite(value: str) -> bool:
    """A number PostgreSQL's numeric takes without overflow (the query's own, not a stored one)."""
    return bool(_NUMBER.match(value)) and math.isfinite(float(value))


def _time_wildcard(t: Term, text: str) -> None:
    raise QueryError(f"wildcards do not apply to {t.field}; use a range such as [now-1h TO now]",
                     max(text.find(t.value), 0), text)


def _exists(name: str, p: list[Any]) -> str:
    if name in TIME_FIELDS:
        return "true"
    if name == "message":
        return "(e.message <> '')"
    if name == "pid":
        return "(e.pid IS NOT NULL)"
    if name in TEXT_COLUMNS:
        return f"(e.{name} IS NOT NULL AND e.{name} <> '')"
    if name == "tags":
        return "(jsonb_array_length(e.tags) > 0)"
    p.append(name)
    return "(e.fields ? %s)"


def _range(r: Range, p: list[Any], text: str) -> str:
    lo_op = ">=" if r.include_low else ">"
    hi_op = "<=" if r.include_high else "<"
    if r.field in TIME_FIELDS:
        return "(" + (" AND ".join(time_range(r, p, text, "%s")) or "true") + ")"
    numeric = all(b is None or _NUMBER.match(b) for b in (r.low, r.high))
    bounds = [(op, b) for op, b in ((lo_op, r.low), (hi_op, r.high)) if b is not None]
    cast = "::numeric" if numeric else "::text"

    def cond(expr: str) -> str:
        """``expr`` within the bounds; ``expr`` is numeric, or text compared by code point (as the predicate)."""
        parts = [f"{expr} {op} %s{cast}" for op, _ in bounds]
        return "(" + (" AND ".join(parts) or f"{expr} IS NOT NULL") + ")"

    values: list[Any] = [float(b) if numeric else b for _, b in bounds]
    if r.field == "pid":
        sql = cond("e.pid::numeric" if numeric else 'e.pid::text COLLATE "C"')
    elif r.field in TEXT_COLUMNS or r.field == "message":
        sql = cond(_numeric(f"e.{r.field}") if numeric else f'e.{r.field} COLLATE "C"')
    else:
        as_text = "(v #>> '{}')"
        expr = (f"(CASE WHEN jsonb_typeof(v) = 'number' THEN {as_text}::numeric ELSE {_numeric(as_text)} END)"
                if numeric else f'{as_text} COLLATE "C"')
        return _json_value(r.field, p, cond(expr), values)
    p.extend(values)
    return sql


POSTGRESQL = Dialect(_term, _range, _exists, "true", "false")
