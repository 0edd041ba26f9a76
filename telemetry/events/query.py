"""The search language operators already type in Kibana: a Lucene-style query parser.

A hand-written recursive-descent parser rather than a regex soup, so every
error can name the exact position where the query stopped making sense and
precedence is the one Lucene users expect (NOT binds tighter than AND, AND
tighter than OR). Grammar::

    query    := or_expr EOF
    or_expr  := and_expr (("OR" | "||") and_expr)*
    and_expr := not_expr (("AND" | "&&")? not_expr)*       juxtaposition means AND (the default)

Juxtaposed terms (``level:ERROR component:nova``) are joined by the implicit
operator: AND by default, because an operator narrowing a search types one
more term and expects fewer lines. Kibana's Lucene syntax joins them with OR
instead; ``store.events.default_operator: OR`` (``set_default_operator``)
gives that reading, where ``a b AND c`` is ``a OR (b AND c)``.
    not_expr := ("NOT" | "!" | "-") not_expr | "+"? primary
    primary  := "(" or_expr ")" | FIELD ":" value | PHRASE | WORD
    value    := PHRASE | WORD | "*" | range | compare | "(" or_expr ")"   (the group inherits FIELD)
    range    := ("[" | "{") bound "TO" bound ("]" | "}")
    compare  := (">" | ">=" | "<" | "<=") bound

Operators are upper case, as in Lucene: a lower-case ``and`` is a word to
search for. A bare word or phrase searches the ``message`` text. Words may
hold ``*`` and ``?`` wildcards and ``\\`` escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["And", "Exists", "Node", "Not", "Or", "QueryError", "Range", "Term", "parse_query", "set_default_operator"]

#: Characters that end an unquoted word (a value word may contain ``:``).
_TERM_STOP = set(' \t\r\n()[]{}":')
_VALUE_STOP = set(' \t\r\n()[]{}"')
_FIELD_NAME = re.compile(r"^[A-Za-z_@][A-Za-z0-9_.@\-]*$")
_KEYWORDS = {"AND", "OR", "NOT", "TO"}


class QueryError(ValueError):
    """A query that does not parse; ``position`` counts characters from 1."""

    def __init__(self, message: str, offset: int, query: str) -> None:
        self.reason = message
        self.position = offset + 1
        self.query = query
        super().__init__(f"{message} at position {self.position}")

    def pointer(self) -> str:
        """The query with a caret under the offending character, for terminals."""
        return f"{self.query}\n{' ' * (self.position - 1)}^"


@dataclass(frozen=True)
class Term:
    """``field:value`` (or free text when ``field`` is None); ``phrase`` came quoted."""

    field: str | None
    value: str
    phrase: bool = False
    wildcard: bool = False


@dataclass(frozen=True)
class Range:
    """``field:[low TO high]``; a None bound is open (``*``)."""

    field: str
    low: str | None
    high: str | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True)
class Exists:
    """``field:*``: the field is present and not empty."""

    field: str


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...] = field(default_factory=tuple)


Node = Term | Range | Exists | Not | And | Or


_default_operator = "AND"


def set_default_operator(op: str) -> None:
    """The operator between juxtaposed terms for every query this process parses: AND or OR."""
    global _default_operator
    if op not in ("AND", "OR"):
        raise ValueError(f"default operator must be AND or OR, not {op!r}")
    _default_operator = op


#: Deepest nesting of groups and NOTs a query may have: far beyond what people write, far below the recursion limit.
MAX_NESTING = 32


def parse_query(text: str, default_operator: str | None = None) -> Node | None:
    """The syntax tree of ``text``; None for an empty query (everything matches)."""
    return _Parser(text, default_operator or _default_operator).parse()


class _Parser:
    def __init__(self, text: str, default_operator: str = "AND") -> None:
        self.text = text
        self.pos = 0
        self.implicit_or = default_operator == "OR"
        self.depth = 0

    # -- scanning -------------------------------------------------------------------------------
    def error(self, message: str, offset: int | None = None) -> QueryError:
        return QueryError(message, self.pos if offset is None else offset, self.text)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_keyword(self, *words: str) -> str | None:
        """The operator at the cursor if it is one of ``words`` (as a whole word)."""
        self.skip_ws()
        for w in words:
            end = self.pos + len(w)
            if self.text.startswith(w, self.pos) and (
                w in ("&&", "||") or end >= len(self.text) or self.text[end] in _TERM_STOP
            ):
                return w
        return None

    def take(self, word: str) -> None:
        self.skip_ws()
        self.pos += len(word)

    def read_word(self, stop: set[str]) -> tuple[str, bool, int]:
        """An unquoted word: (text with escapes resolved, has unescaped wildcard, start offset)."""
        start = self.pos
        out: list[str] = []
        wild = False
        while self.pos < len(self.text) and self.text[self.pos] not in stop:
            ch = self.text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.error("a backslash at the end of the query escapes nothing")
                out.append("\\" + self.text[self.pos + 1])  # keep the escape for the wildcard pass
                self.pos += 2
                continue
            if ch in "*?":
                wild = True
            out.append(ch)
            self.pos += 1
        return "".join(out), wild, start

    def read_phrase(self) -> str:
        start = self.pos
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated quoted phrase (missing closing \")", start)

    # -- grammar --------------------------------------------------------------------------------
    def parse(self) -> Node | None:
        nul = self.text.find("\x00")
        if nul >= 0:  # SQLite's FTS5 reads its query as a C string: a NUL would end it midway
            raise self.error("a query cannot hold the NUL character", nul)
        if not self.text.strip():
            return None
        node = self.or_expr(None)
        if self.peek():
            ch = self.peek()
            if ch == ")":
                raise self.error("unbalanced ')' (no group is open)")
            raise self.error(f"unexpected {ch!r}")
        return node

    def or_expr(self, default_field: str | None) -> Node:
        items = [self.and_expr(default_field)]
        while True:
            op = self.at_keyword("OR", "||")
            if op is not None:
                self.take(op)
            elif not self.implicit_or or not self.peek() or self.peek() == ")":
                break
            items.append(self.and_expr(default_field))  # with OR as the default, juxtaposition lands here
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self, default_field: str | None) -> Node:
        items = [self.not_expr(default_field)]
        while True:
            op = self.at_keyword("AND", "&&")
            if op is not None:
                self.take(op)
                items.append(self.not_expr(default_field))
                continue
            ch = self.peek()
            if not ch or ch == ")" or self.at_keyword("OR", "||") or self.implicit_or:
                break
            items.append(self.not_expr(default_field))  # juxtaposition: implicit AND
        return items[0] if len(items) == 1 else And(tuple(items))

    def nested(self) -> None:
        """One more group or NOT around what follows; each costs a level of recursion here and in the compilers."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"groups and NOTs nested deeper than {MAX_NESTING} levels")

    def not_expr(self, default_field: str | None) -> Node:
        op = self.at_keyword("NOT")
        if op is not None:
            self.take(op)
            self.nested()
            node: Node = Not(self.not_expr(default_field))
            self.depth -= 1
            return node
        ch = self.peek()
        if ch in ("!", "-") and self.pos + 1 < len(self.text) and not self.text[self.pos + 1].isspace():
            self.pos += 1
            self.nested()
            node = Not(self.not_expr(default_field))
            self.depth -= 1
            return node
        if ch == "+":
            self.pos += 1
        return self.primary(default_field)

    def primary(self, default_field: str | None) -> Node:
        ch = self.peek()
        if not ch:
            raise self.error("the query ends where a term was expected")
        if ch == "(":
            return self.group(default_field)
        if ch == '"':
            phrase = self.read_phrase()
            # "one two"* : the phrase with its last word a prefix, as FTS5 reads it (not the phrase
            # AND a bare *, which is how it used to split, so alarms and search both missed "one twofold").
            if (default_field is None and self.text[self.pos:self.pos + 1] == "*"
                    and not re.search(r"[*?\\]", phrase) and re.search(r"\w", phrase)):
                self.pos += 1
                return Term(None, phrase + "*", phrase=True, wildcard=True)
            return Term(default_field, phrase, phrase=True)
        for kw in ("AND", "OR", "&&", "||", "TO"):
            if self.at_keyword(kw):
                raise self.error(f"{kw!r} needs a term before it")
        if ch in "[{":
            if default_field is None:
                raise self.error("a range needs a field, as in status:[500 TO 599]")
            return self.range_(default_field)
        if ch in ")]}:":
            raise self.error(f"unexpected {ch!r} where a term was expected")
        word, wild, start = self.read_word(_TERM_STOP)
        if self.pos < len(self.text) and self.text[self.pos] == ":":
            if wild or not _FIELD_NAME.match(word):
                raise self.error(f"invalid field name {word!r}", start)
            self.pos += 1
            return self.value(word)
        return self.term(default_field, word, wild)

    def group(self, default_field: str | None) -> Node:
        open_at = self.pos
        self.pos += 1
        if self.peek() == ")":
            raise self.error("empty group '()'", open_at)
        self.nested()
        node = self.or_expr(default_field)
        self.depth -= 1
        if self.peek() != ")":
            raise self.error("missing ')' to close the group opened", open_at)
        self.pos += 1
        return node

    def value(self, name: str) -> Node:
        if self.pos < len(self.text) and self.text[self.pos].isspace():
            self.skip_ws()
        if self.pos >= len(self.text):
            raise self.error(f"expected a value after '{name}:'")
        ch = self.text[self.pos]
        if ch == "(":
            return self.group(name)
        if ch == '"':
            return Term(name, self.read_phrase(), phrase=True)
        if ch in "[{":
            return self.range_(name)
        if ch in "<>":
            return self.compare(name)
        if ch in ")]}":
            raise self.error(f"expected a value after '{name}:'")
        word, wild, _ = self.read_word(_VALUE_STOP)
        if word == "*":
            return Exists(name)
        return self.term(name, word, wild)

    def term(self, name: str | None, word: str, wild: bool) -> Term:
        if wild:
            return Term(name, word, wildcard=True)  # escapes stay for the wildcard translation
        return Term(name, _unescape(word))

    def bound(self, stop: set[str]) -> str | None:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.error("the range is not closed (expected a bound and ']' or '}')")
        if self.text[self.pos] == '"':
            return self.read_phrase()
        word, _, start = self.read_word(stop)
        if not word:
            raise self.error("expected a range bound")
        if word == "TO":
            raise self.error("expected a range bound before 'TO'", start)
        return None if word == "*" else _unescape(word)

    def range_(self, name: str) -> Range:
        open_at = self.pos
        include_low = self.text[self.pos] == "["
        self.pos += 1
        stop = _VALUE_STOP
        low = self.bound(stop)
        if not self.at_keyword("TO"):
            raise self.error("expected 'TO' in the range")
        self.take("TO")
        high = self.bound(stop)
        ch = self.peek()
        if ch not in ("]", "}"):
            raise self.error("expected ']' or '}' to close the range opened", open_at if not ch else None)
        self.pos += 1
        return Range(name, low, high, include_low, ch == "]")

    def compare(self, name: str) -> Range:
        text, pos = self.text, self.pos
        op = ">=" if text.startswith(">=", pos) else "<=" if text.startswith("<=", pos) else text[pos]
        self.pos += len(op)
        value = self.bound(_VALUE_STOP)
        if value is None:
            raise self.error(f"'{op}' needs a value, not '*'")
        if op.startswith(">"):
            return Range(name, value, None, include_low=op == ">=")
        return Range(name, None, value, include_high=op == "<=")


def _unescape(word: str) -> str:
    return re.sub(r"\\(.)", r"\1", word)
