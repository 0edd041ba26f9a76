"""Match one event against a Kibana-style query: ``level:ERROR AND component:nova``.

Log alarms need a yes/no answer per event as it streams by, not a search over
a store, so this is a tiny recursive-descent matcher rather than a query
planner. The interface (``compile_query(text) -> Matcher``; ``Matcher(event)
-> bool``) is what the rule engine depends on; the events store's grammar can
replace the implementation later without touching the callers.

Supported: ``field:value``, ``field:"a phrase"``, wildcards ``*`` and ``?`` in
values, bare terms (searched in ``message``), ``AND`` / ``OR`` / ``NOT`` (and
``&&``, ``||``, ``!``, a leading ``-``), parentheses, ``field:>5`` style
comparisons, and nested fields by dots (``payload.state``). Adjacent terms
without an operator are ANDed, as Kibana's default operator does.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

__all__ = ["Matcher", "QuerySyntaxError", "compile_query", "lookup"]

_TOKEN = re.compile(
    r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>&&|\|\||!(?!=))|"(?P<phrase>(?:[^"\\]|\\.)*)"|(?P<word>[^\s()"]+))'
)


class QuerySyntaxError(ValueError):
    """The query text is malformed; the message says where."""


def lookup(event: Mapping[str, Any], field: str) -> Any:
    """A field by name, then by dotted path (``traits.state``, ``payload.state``)."""
    if field in event:
        return event[field]
    cur: Any = event
    for part in field.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QuerySyntaxError(f"unexpected character {text[pos]!r} at {pos} in query {text!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind) if kind else ""
        if kind == "phrase":
            value = re.sub(r"\\(.)", r"\1", value)
        elif kind == "word" and value in ("AND", "OR", "NOT"):
            kind = "op"
        elif kind == "op":
            value = {"&&": "AND", "||": "OR", "!": "NOT"}[value]
        out.append((kind, value))
    return out


def _value_test(value: str, quoted: bool) -> Callable[[Any], bool]:
    """A predicate on one field value: wildcard, comparison, or equality (case-insensitive)."""
    for op in (">=", "<=", ">", "<"):
        if not quoted and value.startswith(op):
            bound = value[len(op):]
            try:
                num = float(bound)
            except ValueError:
                raise QuerySyntaxError(f"comparison {value!r} needs a number") from None
            cmp = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}[op]

            def compare(v: Any, num: float = num, cmp: Any = cmp) -> bool:
                try:
                    return bool(cmp(float(v), num))
                except (TypeError, ValueError):
                    return False

            return compare
    want = value.lower()
    if not quoted and ("*" in value or "?" in value):
        rx = re.compile(fnmatch.translate(want), re.DOTALL)
        return lambda v: rx.match(str(v).lower()) is not None
    if quoted:  # a phrase matches inside text, as in a full-text field
        return lambda v: want in str(v).lower()
    return lambda v: str(v).lower() == want or (isinstance(v, bool) and str(v).lower() == want)


def _field_matcher(field: str | None, test: Callable[[Any], bool]) -> Matcher:
    def one(v: Any) -> bool:
        if isinstance(v, list):
            return any(test(x) for x in v)
        return v is not None and test(v)

    if field is None:  # a bare term: the message, as Kibana's default field
        return lambda e: one(e.get("message"))
    if field == "_exists_":
        return lambda e: False  # replaced by the parser
    return lambda e: one(lookup(e, field))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise QuerySyntaxError(f"query {self.text!r} ends too early")
        self.i += 1
        return tok

    def parse(self) -> Matcher:
        if not self.toks:
            return lambda e: True
        m = self.or_()
        if self.peek() is not None:
            raise QuerySyntaxError(f"unexpected {self.peek()[1]!r} in query {self.text!r}")  # type: ignore[index]
        return m

    def or_(self) -> Matcher:
        parts = [self.and_()]
        while self.peek() == ("op", "OR"):
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def and_(self) -> Matcher:
        parts = [self.not_()]
        while True:
            tok = self.peek()
            if tok == ("op", "AND"):
                self.take()
            elif tok is None or tok in (("op", "OR"), ("rp", ")")):
                break
            parts.append(self.not_())  # implicit AND between adjacent terms
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def not_(self) -> Matcher:
        if self.peek() == ("op", "NOT"):
            self.take()
            inner = self.not_()
            return lambda e: not inner(e)
        return self.atom()

    def atom(self) -> Matcher:
        kind, value = self.take()
        if kind == "lp":
            inner = self.or_()
            if self.take()[0] != "rp":
                raise QuerySyntaxError(f"missing ')' in query {self.text!r}")
            return inner
        if kind == "phrase":
            return _field_matcher(None, _value_test(value, True))
        if kind != "word":
            raise QuerySyntaxError(f"unexpected {value!r} in query {self.text!r}")
        if value.startswith("-") and len(value) > 1:
            self.toks.insert(self.i, ("word", value[1:]))
            inner = self.atom()
            return lambda e: not inner(e)
        field, sep, rest = value.partition(":")
        if not sep:  # a bare term searches the message text, as a full-text field would
            return _field_matcher(None, _value_test(value, "*" not in value and "?" not in value))
        if not field:
            raise QuerySyntaxError(f"missing field name before ':' in query {self.text!r}")
        if rest == "":  # field:"phrase" or field:(a OR b)
            nxt = self.peek()
            if nxt and nxt[0] == "phrase":
                self.take()
                return _field_matcher(field, _value_test(nxt[1], True))
            if nxt and nxt[0] == "lp":
                return self._field_group(field)
            raise QuerySyntaxError(f"missing value after {field}: in query {self.text!r}")
        if field == "_exists_":
            return lambda e: lookup(e, rest) is not None
        return _field_matcher(field, _value_test(rest, False))

    def _field_group(self, field: str) -> Matcher:
        """``field:(a OR b)``: rewrite the bare terms of the group onto ``field``."""
        self.take()
        depth, j = 1, self.i
        while j < len(self.toks) and depth:
            k, v = self.toks[j]
            depth += {"lp": 1, "rp": -1}.get(k, 0)
            if depth and k == "word" and ":" not in v:
                self.toks[j] = ("word", f"{field}:{v}")
            elif depth and k == "phrase":
                self.toks[j] = ("word", f"{field}:{v}") if " " not in v else (k, v)
            j += 1
        inner = self.or_()
        if self.take()[0] != "rp":
            raise QuerySyntaxError(f"missing ')' in query {self.text!r}")
        return inner


@lru_cache(maxsize=1024)
def compile_query(text: str) -> Matcher:
    """Compile once, match many: a function ``event -> bool``."""
    return _Parser(text).parse()
