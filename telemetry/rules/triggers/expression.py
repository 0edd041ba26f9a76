"""Zabbix trigger expressions, parsed by recursive descent (never ``eval``).

Grammar (Zabbix 5.4+ syntax)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := add (("=" | "<>" | "<" | "<=" | ">" | ">=") add)*
    add     := mul (("+" | "-") mul)*
    mul     := unary (("*" | "/") unary)*
    unary   := "-" unary | primary
    primary := NUMBER [K|M|G|T|s|m|h|d|w] | STRING | NAME "(" "/" HOST "/" KEY ("," PARAM)* ")" | "(" expr ")"

``KEY`` may hold ``[a,b]`` parameters; a ``PARAM`` such as ``5m``, ``#3`` or
``1h:now-1d`` (a window shifted back a day) is kept as text and read by the
function. The result is a tree of tuples that ``evaluate`` walks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FUNCTIONS = ("last", "avg", "min", "max", "sum", "count", "nodata", "change", "diff")
SUFFIX = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ExpressionError(ValueError):
    """A trigger expression that does not parse; the message points at the spot."""


@dataclass(frozen=True)
class ItemRef:
    host: str
    key: str


@dataclass(frozen=True)
class Call:
    func: str
    item: ItemRef
    params: tuple[str, ...]


Node = Any  # ("num", float) | ("str", str) | ("call", Call) | (op, left, right) | ("neg"|"not", x)

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?[KMGTsmhdw]?(?![A-Za-z_.]))
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<op><>|<=|>=|[-+*/=<>(),])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> ExpressionError:
        return ExpressionError(f"{what} at position {self.pos} in {self.text!r}")

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> tuple[str, str] | None:
        self._skip()
        if self.pos >= len(self.text):
            return None
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            raise self.error(f"unexpected {self.text[self.pos]!r}")
        kind = m.lastgroup or ""
        return kind, m.group(kind)

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end")
        m = _TOKEN.match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok[1] != value:
            raise self.error(f"expected {value!r}, got {tok[1]!r}")

    def parse(self) -> Node:
        node = self.or_()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def _binary(self, ops: tuple[str, ...], sub: Any) -> Node:
        node = sub()
        while (tok := self.peek()) is not None and tok[1] in ops and tok[0] in ("op", "name"):
            self.take()
            node = (tok[1], node, sub())
        return node

    def or_(self) -> Node:
        return self._binary(("or",), self.and_)

    def and_(self) -> Node:
        return self._binary(("and",), self.not_)

    def not_(self) -> Node:
        if self.peek() == ("name", "not"):
            self.take()
            return ("not", self.not_())
        return self.cmp()

    def cmp(self) -> Node:
        return self._binary(("=", "<>", "<", "<=", ">", ">="), self.add)

    def add(self) -> Node:
        return self._binary(("+", "-"), self.mul)

    def mul(self) -> Node:
        return self._binary(("*", "/"), self.unary)

    def unary(self) -> Node:
        if self.peek() == ("op", "-"):
            self.take()
            return ("neg", self.unary())
        return self.primary()

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            mult = SUFFIX.get(value[-1], 1) if not value[-1].isdigit() else 1
            return ("num", float(value[:-1] if mult != 1 or not value[-1].isdigit() else value) * mult)
        if kind == "str":
            return ("str", re.sub(r"\\(.)", r"\1", value[1:-1]))
        if value == "(":
            node = self.or_()
            self.expect(")")
            return node
        if kind == "name":
            if value not in FUNCTIONS:
                raise self.error(f"unknown function {value!r} (known: {', '.join(FUNCTIONS)})")
            self.expect("(")
            item = self._item()
            params: list[str] = []
            self._skip()
            while self.text[self.pos:self.pos + 1] == ",":
                self.pos += 1
                params.append(self._raw_param())
                self._skip()
            self.expect(")")
            return ("call", Call(value, item, tuple(params)))
        raise self.error(f"unexpected {value!r}")

    def _item(self) -> ItemRef:
        """``/host/key[params]``: read raw, as keys contain dots, commas and brackets."""
        self._skip()
        if self.text[self.pos:self.pos + 1] != "/":
            raise self.error("expected an item reference /host/key")
        end_host = self.text.find("/", self.pos + 1)
        if end_host < 0:
            raise self.error("expected /host/key")
        host = self.text[self.pos + 1:end_host]
        i, depth = end_host + 1, 0
        while i < len(self.text):
            c = self.text[i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif c in ",)" and depth == 0:
                break
            i += 1
        key = self.text[end_host + 1:i].strip()
        if not key:
            raise self.error("empty item key")
        self.pos = i
        return ItemRef(host, key)

    def _raw_param(self) -> str:
        self._skip()
        if self.text[self.pos:self.pos + 1] == '"':
            m = re.compile(r'"((?:[^"\\]|\\.)*)"').match(self.text, self.pos)
            if not m:
                raise self.error("unterminated string")
            self.pos = m.end()
            return m.group(1)
        m = re.compile(r"[^,)]*").match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()
        return m.group(0).strip()


def parse(text: str) -> Node:
    """Parse a trigger expression into a tree; raises ExpressionError naming the spot."""
    return _Parser(text).parse()


def calls(node: Node) -> list[Call]:
    """Every function call in a tree (to index triggers by the items they read)."""
    if node[0] == "call":
        return [node[1]]
    return [c for sub in node[1:] if isinstance(sub, tuple) for c in calls(sub)]


def substitute(text: str, host: str, template: str = "") -> str:
    """A template expression for one host: ``{HOST.HOST}`` (and the template's own name) become it."""
    out = text.replace("{HOST.HOST}", host).replace("{HOST.NAME}", host)
    if template:
        out = out.replace(f"/{template}/", f"/{host}/")
    return out
