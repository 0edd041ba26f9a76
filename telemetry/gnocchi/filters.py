"""Gnocchi's resource search filters: ``{"and": [{"=": {"server_group": "g"}}, {">=": {"started_at": ...}}]}``.

The JSON form of ``/v1/search/resource``, ``/v1/aggregates``' ``search`` and
Aodh's ``query``, plus the text form of the ``filter`` parameter
(``server_group='g' and project_id!='p'``). Evaluated in memory against the
catalogue (see ``catalog.py``); an unknown operator or attribute is a 400
that names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from telemetry.gnocchi.models import GnocchiError, Resource, to_timestamp

Predicate = Callable[[Resource], bool]
_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "==": lambda a, b: a == b, "eq": lambda a, b: a == b,
    "!=": lambda a, b: a != b, "≠": lambda a, b: a != b, "ne": lambda a, b: a != b,
    "<": lambda a, b: a < b, "lt": lambda a, b: a < b, ">": lambda a, b: a > b, "gt": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, "≤": lambda a, b: a <= b, "le": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b, "≥": lambda a, b: a >= b, "ge": lambda a, b: a >= b,
}
_TIME_FIELDS = {"started_at", "ended_at", "revision_start", "revision_end"}


def _bad(reason: str) -> GnocchiError:
    return GnocchiError(400, {"cause": "Invalid input", "reason": reason, "detail": []})


def _typed(name: str, have: Any, want: Any) -> tuple[Any, Any]:
    if name in _TIME_FIELDS or isinstance(have, datetime):
        h = have if isinstance(have, datetime) else to_timestamp(have) if have is not None else None
        return h, to_timestamp(want)
    if isinstance(have, (int, float)) and not isinstance(have, bool) and isinstance(want, (int, float, str)):
        try:
            return float(have), float(want)
        except ValueError:
            return str(have), str(want)
    if isinstance(have, str) and name in ("id", "instance_id", "image_id"):
        return have.lower(), str(want).lower()
    return have, want


def compile_filter(q: Any, resolve_id: Callable[[str], str] | None = None) -> Predicate:
    """One predicate for the whole filter; ``resolve_id`` turns an ``id`` value into the stored UUID."""
    if q is None or q == {}:
        return lambda _: True
    if not isinstance(q, dict) or len(q) != 1:
        raise _bad("a filter is an object with exactly one operator")
    op, body = next(iter(q.items()))
    op = op.lower() if isinstance(op, str) else op
    if op in ("and", "∧", "or", "∨"):
        if not isinstance(body, list) or not body:
            raise _bad(f"'{op}' takes a non-empty list")
        subs = [compile_filter(b, resolve_id) for b in body]
        if op in ("and", "∧"):
            return lambda r: all(s(r) for s in subs)
        return lambda r: any(s(r) for s in subs)
    if op in ("not", "¬"):
        sub = compile_filter(body, resolve_id)
        return lambda r: not sub(r)
    if not isinstance(body, dict) or len(body) != 1:
        raise _bad(f"'{op}' takes an object of one attribute")
    name, want = next(iter(body.items()))
    if name == "id" and resolve_id is not None:
        want = [resolve_id(str(w)) for w in want] if isinstance(want, list) else resolve_id(str(want))
    if op in ("in", "∈"):
        if not isinstance(want, list):
            raise _bad("'in' takes a list")
        wants = list(want)
        return lambda r: any(_match_eq(r.field(name), name, w) for w in wants)
    if op in ("like",):
        pattern = str(want).replace("%", "*").replace("_", "?")
        return lambda r: isinstance(r.field(name), str) and fnmatchcase(r.field(name), pattern)
    if op not in _CMP:
        raise _bad(f"unknown operator {op!r}")
    cmp = _CMP[op]

    def test(r: Resource) -> bool:
        have = r.field(name)
        if have is None or want is None:
            return cmp(have, want) if op in ("=", "==", "eq", "!=", "≠", "ne") else False
        try:
            a, b = _typed(name, have, want)
            return bool(cmp(a, b))
        except (TypeError, GnocchiError):
            return False

    return test


def _match_eq(have: Any, name: str, want: Any) -> bool:
    if have is None:
        return want is None
    try:
        a, b = _typed(name, have, want)
    except GnocchiError:
        return False
    return bool(a == b)


_TEXT = re.compile(r"""\s*(\(|\)|!=|>=|<=|=|<|>|'(?:[^']|'')*'|"[^"]*"|[^\s()!=<>'"]+)""")


def parse_text(text: str) -> dict[str, Any]:
    """The ``filter`` parameter: ``a=1 and (b!='x' or c>=2)``, ``not``, ``in [..]`` not supported."""
    tokens = _TEXT.findall(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise _bad(f"incomplete filter: {text!r}")
        pos += 1
        return tokens[pos - 1]

    def value(tok: str) -> Any:
        if tok[:1] in "'\"":
            return tok[1:-1].replace("''", "'")
        if tok == "null":
            return None
        try:
            return int(tok)
        except ValueError:
            try:
                return float(tok)
            except ValueError:
                return tok

    def atom() -> dict[str, Any]:
        tok = take()
        if tok == "(":
            inner = expr()
            if take() != ")":
                raise _bad(f"missing ) in filter {text!r}")
            return inner
        if tok.lower() == "not":
            return {"not": atom()}
        op = take()
        if op.lower() in ("eq", "ne", "lt", "le", "gt", "ge", "like"):
            op = op.lower()
        if op not in _CMP and op != "like":
            raise _bad(f"unknown operator {op!r} in filter {text!r}")
        return {op: {tok: value(take())}}

    def expr() -> dict[str, Any]:
        left = atom()
        while (p := peek()) is not None and p.lower() in ("and", "or"):
            kind = take().lower()
            right = atom()
            left = {kind: [left, right]}
        return left

    out = expr()
    if pos != len(tokens):
        raise _bad(f"unexpected {tokens[pos]!r} in filter {text!r}")
    return out
