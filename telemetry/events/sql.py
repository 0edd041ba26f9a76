"""Translation of a parsed query into an SQLite WHERE clause over one partition.

Every value travels as a bound parameter, never spliced into the SQL text:
even the FTS5 match expression and the JSON path are parameters, built from
values quoted by the rules of their own languages. Fields named in the
contract are columns (indexed where operators filter most); any other field
lives in the ``fields`` JSON column and is reached through ``json_each``,
which treats a scalar as a one-element list, so a grok name captured twice
(a list) matches when any of its values does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telemetry.events.query import And, Exists, Node, Not, Or, QueryError, Range, Term, parse_query
from telemetry.events.times import parse_time_bound, to_micros

#: Text columns of the ``events`` table (declared COLLATE NOCASE).
TEXT_COLUMNS = (
    "id", "host", "component", "type", "level", "logger", "request_id", "user_id", "project_id",
    "instance_id", "event_type", "publisher_id",
)
TIME_FIELDS = {"@timestamp", "timestamp"}
#: Columns looked up through the store's id index (``store.ID_INDEX``: their keys are random, which a
#: B-tree index pays for at every commit). An equality is the rows the index gives for the value's
#: terms, checked against the column itself: a subquery of row ids like the full-text match, which the
#: planner drives from (beside component:nova it would otherwise scan every nova row).
ID_COLUMNS = frozenset({"request_id", "instance_id"})
#: Characters the id index keeps inside a term besides ASCII letters and digits (and every non-ASCII
#: character, as FTS5's ascii tokenizer does): "req-<uuid>" is one term.
ID_TOKEN_CHARS = "-_.:"
_ID_SEPARATORS = re.compile(r"[^0-9A-Za-z" + re.escape(ID_TOKEN_CHARS) + r"\x80-\U0010ffff]+")
ID_MATCH = "e.seq IN (SELECT rowid FROM events_ids WHERE events_ids MATCH ?)"


def id_terms(value: str) -> list[str]:
    """The terms FTS5's ascii tokenizer makes of ``value`` with ``ID_TOKEN_CHARS``, quoted for a MATCH:
    each alone (the index keeps no positions for phrases), all required."""
    return [_fts_phrase(t) for t in _ID_SEPARATORS.split(value) if t]


#: Day files of earlier versions index these columns in B-trees led by the hour of the day: an equality
#: seeks every hour (-23..23: SQLite's integer division truncates toward zero for a time before 1970);
#: the oldest files' (id, time) indexes answer the same SQL.
_EVERY_HOUR = f"((ts / 3600000000) % 24) IN ({', '.join(map(str, range(-23, 24)))})"
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
#: A number in SQL from a JSON value or text; NULL when the text is not numeric.
_NUMERIC = (
    "(CASE WHEN typeof({x}) IN ('integer','real') THEN {x} "
    "WHEN trim({x}) GLOB '*[0-9]*' AND NOT trim({x}) GLOB '*[^0-9.eE+-]*' THEN CAST({x} AS REAL) END)"
)


#: The full-text condition: a list of matching rows the query planner likes to drive from.
FTS_MATCH = "e.seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"


class Compiled:
    """A WHERE clause and its parameters, in order."""

    def __init__(self, where: str, params: list[Any]) -> None:
        self.where = where
        self.params = params

    @property
    def full_text(self) -> bool:
        """True when the clause searches the message index (see ``telemetry.events.paging`` for why it matters)."""
        return FTS_MATCH in self.where


@dataclass(frozen=True)
class Dialect:
    """How one backend writes the leaves of the tree (terms, ranges, a field's presence) and booleans."""

    term: Callable[[Term, list[Any], str], str]
    range: Callable[[Range, list[Any], str], str]
    exists: Callable[[str, list[Any]], str]
    true: str
    false: str
    #: Writes the AND of the items' SQL (SQLite: ``_and_ids_first``).
    conjunction: Callable[[list[str]], str] = lambda parts: "(" + " AND ".join(parts) + ")"


def compile_tree(text: str | None, dialect: Dialect) -> Compiled:
    """Parse ``text`` and write it as SQL: the boolean structure here, the leaves by ``dialect``.

    Both backends (SQLite here, PostgreSQL in ``sql_pg.py``) share the structure, so AND, OR and
    NOT mean the same on either.
    """
    node = parse_query(text or "")
    if node is None:
        return Compiled(dialect.true, [])
    params: list[Any] = []
    return Compiled(_walk(node, params, text or "", dialect), params)


def _walk(n: Node, p: list[Any], text: str, d: Dialect) -> str:
    if isinstance(n, And):
        return d.conjunction([_walk(i, p, text, d) for i in n.items])
    if isinstance(n, Or):
        return "(" + " OR ".join(_walk(i, p, text, d) for i in n.items) + ")"
    if isinstance(n, Not):
        # Lucene's NOT keeps events where the field is missing: NULL counts as "not matched".
        return f"(NOT COALESCE({_walk(n.item, p, text, d)}, {d.false}))"
    if isinstance(n, Exists):
        return d.exists(n.field, p)
    if isinstance(n, Range):
        return d.range(n, p, text)
    return d.term(n, p, text)


def compile_query(text: str | None, id_index: bool = True) -> Compiled:
    """Parse and translate; raises QueryError naming the position of the problem.

    ``id_index=False``: for a day file an earlier version wrote, which has B-tree indexes on the id
    columns instead (``store.has_id_index``).
    """
    return compile_tree(text, SQLITE if id_index else _SQLITE_EARLIER)


def _json_path(name: str) -> str:
    return f'$."{name}"'  # the name matched the field-name pattern, so it holds no quote


def _like(pattern: str) -> str:
    """A Lucene wildcard word as a LIKE pattern (``*``→``%``, ``?``→``_``), escapes honoured."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            ch = pattern[i + 1]
            out.append("\\" + ch if ch in "%_\\" else ch)
            i += 2
            continue
        out.append("%" if ch == "*" else "_" if ch == "?" else "\\" + ch if ch in "%_\\" else ch)
        i += 1
    return "".join(out)


def _fts_phrase(value: str) -> str:
    """An FTS5 string literal: double quotes inside are doubled."""
    return '"' + value.replace('"', '""') + '"'


def _text_match(t: Term, p: list[Any]) -> str:
    """Free text over ``message``: FTS5 for words, phrases and trailing ``*``; LIKE for the rest."""
    fts_sub = FTS_MATCH
    if not t.wildcard:
        p.append(_fts_phrase(t.value))
        return fts_sub
    body = t.value[:-1]
    if t.value.endswith("*") and body and not re.search(r"[*?\\]", body):
        p.append(_fts_phrase(body) + " *")
        return fts_sub
    p.append("%" + _like(t.value) + "%")
    return "(e.message LIKE ? ESCAPE '\\')"


def _term(t: Term, p: list[Any], text: str, id_index: bool = True) -> str:
    name = t.field
    if name is None or name == "message":
        return _text_match(t, p)
    value = t.value.upper() if name == "level" and not t.wildcard else t.value
    if name in TIME_FIELDS:
        return _time_equal(t, p, text)
    if name == "pid":
        if t.wildcard:
            p.append(_like(value))
            return "(CAST(e.pid AS TEXT) LIKE ? ESCAPE '\\')"
        p.append(value)
        return "(e.pid = ?)"
    if name in TEXT_COLUMNS:
        if t.wildcard:
            p.append(_like(value))
            return f"(e.{name} LIKE ? ESCAPE '\\')"
        if name in ID_COLUMNS:
            if not id_index:
                p.append(value)
                return f"(e.seq IN (SELECT seq FROM events WHERE {_EVERY_HOUR} AND {name} = ?))"
            terms = id_terms(value)
            if terms:  # else a value of separators alone, which no term finds: the column is read
                p.extend([" AND ".join(terms), value])
                return f"({ID_MATCH} AND e.{name} = ?)"
        p.append(value)
        return f"(e.{name} = ?)"
    source = "json_each(e.tags)" if name == "tags" else "json_each(e.fields, ?)"
    if name != "tags":
        p.append(_json_path(name))
    if t.wildcard:
        p.append(_like(value))
        return f"EXISTS (SELECT 1 FROM {source} WHERE CAST(value AS TEXT) LIKE ? ESCAPE '\\')"
    if _NUMBER.match(value):
        p.extend([float(value), value])
        return f"EXISTS (SELECT 1 FROM {source} WHERE value = ? OR value = ? COLLATE NOCASE)"
    p.append(value)
    return f"EXISTS (SELECT 1 FROM {source} WHERE value = ? COLLATE NOCASE)"


def _exists(name: str, p: list[Any]) -> str:
    if name in TIME_FIELDS:
        return "1"
    if name == "message":
        return "(e.message != '')"
    if name == "pid":
        return "(e.pid IS NOT NULL)"
    if name in TEXT_COLUMNS:
        return f"(e.{name} IS NOT NULL AND e.{name} != '')"
    if name == "tags":
        return "(json_array_length(e.tags) > 0)"
    p.append(_json_path(name))
    return "(json_type(e.fields, ?) IS NOT NULL)"


def _time(value: str, text: str) -> int:
    try:
        return to_micros(parse_time_bound(value))
    except ValueError as exc:
        offset = max(text.find(value), 0)
        raise QueryError(str(exc), offset, text) from None


def _time_equal(t: Term, p: list[Any], text: str) -> str:
    """``@timestamp:2026-03-02T09:14`` matches that instant; a wildcard is not meaningful on times."""
    if t.wildcard:
        raise QueryError(f"wildcards do not apply to {t.field}; use a range such as [now-1h TO now]",
                         max(text.find(t.value), 0), text)
    p.append(_time(t.value, text))
    return "(e.ts = ?)"


def time_range(r: Range, p: list[Any], text: str, ph: str) -> list[str]:
    """The conditions on ``e.ts`` of a range over ``@timestamp`` (none when both ends are open)."""
    parts = []
    if r.low is not None:
        parts.append(f"e.ts {'>=' if r.include_low else '>'} {ph}")
        p.append(_time(r.low, text))
    if r.high is not None:
        parts.append(f"e.ts {'<=' if r.include_high else '<'} {ph}")
        p.append(_time(r.high, text))
    return parts


def _range(r: Range, p: list[Any], text: str) -> str:
    lo_op = ">=" if r.include_low else ">"
    hi_op = "<=" if r.include_high else "<"
    if r.field in TIME_FIELDS:
        return "(" + (" AND ".join(time_range(r, p, text, "?")) or "1") + ")"
    numeric = all(b is None or _NUMBER.match(b) for b in (r.low, r.high))
    bounds = [(lo_op, r.low), (hi_op, r.high)]
    conv: Any = float if numeric else str

    def cond(x: str) -> str:
        expr = _NUMERIC.format(x=x) if numeric else f"CAST({x} AS TEXT)"
        parts = [f"{expr} {op} ?" for op, b in bounds if b is not None]
        p.extend(conv(b) for _, b in bounds if b is not None)
        return "(" + (" AND ".join(parts) or f"{x} IS NOT NULL") + ")"

    if r.field == "pid" or r.field in TEXT_COLUMNS or r.field == "message":
        return cond(f"e.{r.field}")
    if r.field == "tags":
        return f"EXISTS (SELECT 1 FROM json_each(e.tags) WHERE {cond('value')})"
    p.append(_json_path(r.field))
    return f"EXISTS (SELECT 1 FROM json_each(e.fields, ?) WHERE {cond('value')})"


#: An equality on a text column as ``_term`` writes it.
_TEXT_EQUALITY = re.compile(r"\(e\.(" + "|".join(TEXT_COLUMNS) + r") = \?\)")


def _and_ids_first(parts: list[str]) -> str:
    """An AND in which an id lookup finds the rows: the other items' equalities are read off those rows.

    Beside component:nova the planner would otherwise walk the component's index and test each of its
    rows against the id's few (64 ms against 0.6 for one request among 600,000 rows). A unary ``+``
    keeps a column's value and its NOCASE collation but not its index.
    """
    if any(ID_MATCH in part for part in parts):
        parts = [part if ID_MATCH in part else _TEXT_EQUALITY.sub(r"(+e.\1 = ?)", part) for part in parts]
    return "(" + " AND ".join(parts) + ")"


SQLITE = Dialect(_term, _range, _exists, "1", "0", _and_ids_first)
_SQLITE_EARLIER = Dialect(lambda t, p, text: _term(t, p, text, id_index=False), _range, _exists, "1", "0")
