"""A compiler for Logstash grok expressions, and the compiled matcher.

Operators arrive with grok patterns written for Logstash (Oniguruma syntax);
we accept them unchanged and turn each expression into ONE regular
expression for the ``regex`` module, which has a per-match ``timeout``: a
pathological pattern or line costs at most the time budget, never the stage.

What makes it faster than a naive expansion (pygrok's): references without a
field name become non-capturing groups, so the engine tracks only the groups
that become fields, and captures are read with one ``groups()`` call into a
precomputed plan instead of a ``groupdict()`` walk.

Logstash semantics kept here:
* ``%{SYNTAX}``, ``%{SYNTAX:field}``, ``%{SYNTAX:field:int|float}``; field
  names may be nested (``[http][status]``) or dotted-free plain names.
* inline ``(?<field>...)`` captures, in expressions and in pattern files.
* named captures inside referenced definitions are fields too (SYSLOGBASE's
  ``program`` and ``pid``), whether or not the reference itself is named.
* a field captured more than once becomes a list of the values that matched;
  a capture that did not participate is left out (``keep_empty_captures``
  false).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import regex

from telemetry.parse import budget

__all__ = ["CaptureSpec", "Grok", "GrokError", "GrokTimeout", "compile_grok", "set_field"]

#: ``%{SYNTAX}``, ``%{SYNTAX:semantic}``, ``%{SYNTAX:semantic:type}`` (as jls-grok reads them).
REFERENCE = re.compile(
    r"%\{(?P<syntax>[A-Za-z0-9_]+)(?::(?P<semantic>[^:}]+))?(?::(?P<conv>int|integer|float))?\}"
)
#: A reference that does not parse at all, to name it in the error.
LOOSE_REFERENCE = re.compile(r"%\{[^}]*\}?")
_FIELD_PART = re.compile(r"\[([^\[\]]+)\]")
_INLINE_FLAGS = re.compile(r"\(\?([imx-]+)([:)])")


class GrokError(ValueError):
    """A grok expression that cannot compile; the message names the pattern and the cause."""


class GrokTimeout(Exception):
    """The match ran past its time budget."""


@dataclass(frozen=True)
class CaptureSpec:
    """Where one regex group goes: its field path and the conversion Logstash would apply."""

    group: int
    path: tuple[str, ...]
    conv: str | None = None  # "int" | "float" | None


def field_path(name: str) -> tuple[str, ...]:
    """``[http][status]`` -> (http, status); a plain name is a path of one."""
    if name.startswith("["):
        parts = _FIELD_PART.findall(name)
        if parts and "".join(f"[{p}]" for p in parts) == name:
            return tuple(parts)
    return (name,)


def set_field(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Store one capture as Logstash does: a second value for a field makes a list."""
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    last = path[-1]
    if last in node:
        old = node[last]
        if isinstance(old, list):
            old.append(value)
        else:
            node[last] = [old, value]
    else:
        node[last] = value


def _convert(value: str, conv: str | None) -> Any:
    """Logstash's ``:int`` / ``:float``; text that is not a number stays text."""
    if conv is None:
        return value
    try:
        if conv == "float":
            return float(value)
        try:
            return int(value)
        except ValueError:
            return int(float(value))  # Logstash's to_i truncates "3.5" to 3
    except ValueError:
        return value


class _Expander:
    """Turns one grok expression into a Python regex string plus its capture plan."""

    def __init__(self, patterns: Mapping[str, str], name: str) -> None:
        self.patterns = patterns
        self.name = name
        self.specs: list[tuple[str, tuple[str, ...], str | None]] = []  # (group name, path, conv)
        self._plain: dict[str, str] = {}  # capture-free definitions, expanded once

    def _group(self, semantic: str, conv: str | None) -> str:
        gname = f"g{len(self.specs)}"
        self.specs.append((gname, field_path(semantic), conv))
        return gname

    def expand(self, text: str, stack: tuple[str, ...]) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        depth = 0  # inside a character class
        while i < n:
            c = text[i]
            if c == "\\":
                pair = text[i:i + 2]
                out.append(_ESCAPES.get(pair, pair) if depth == 0 else _CLASS_ESCAPES.get(pair, pair))
                i += 2
                continue
            if depth:
                if c == "[":
                    depth += 1
                elif c == "]":
                    depth -= 1
                out.append(c)
                i += 1
                continue
            if c == "[":
                # A ']' right after '[' or '[^' is a literal member, not the end.
                j = i + 1
                if j < n and text[j] == "^":
                    j += 1
                if j < n and text[j] == "]":
                    j += 1
                out.append(text[i:j])
                depth = 1
                i = j
                continue
            if c == "%" and text.startswith("%{", i):
                m = REFERENCE.match(text, i)
                if m is None:
                    bad = LOOSE_REFERENCE.match(text, i)
                    raise GrokError(f"pattern {self.name!r}: malformed reference {bad.group(0) if bad else text[i:]!r}")
                out.append(self._reference(m, stack))
                i = m.end()
                continue
            if c == "(" and not text.startswith("(?", i) and not text.startswith("(*", i):
                # Oniguruma does not capture plain groups once named ones exist: neither do we.
                out.append("(?:")
                i += 1
                continue
            if c == "(" and text.startswith("(?", i):
                named = self._inline_name(text, i)
                if named is not None:
                    semantic, end = named
                    out.append(f"(?P<{self._group(semantic, None)}>")
                    i = end
                    continue
                flags = _INLINE_FLAGS.match(text, i)
                if flags:
                    # Oniguruma's (?m) is "dot matches newline": Python's s.
                    out.append("(?" + flags.group(1).replace("m", "s") + flags.group(2))
                    i = flags.end()
                    continue
            out.append(c)
            i += 1
        return "".join(out)

    @staticmethod
    def _inline_name(text: str, i: int) -> tuple[str, int] | None:
        """``(?<name>`` or ``(?P<name>`` at i (not a lookbehind): the name and where the body starts."""
        if text.startswith("(?P<", i):
            start = i + 4
        elif text.startswith("(?<", i) and text[i + 3:i + 4] not in ("=", "!"):
            start = i + 3
        else:
            return None
        end = text.find(">", start)
        if end < 0:
            raise GrokError(f"unterminated named group at {text[i:i + 20]!r}")
        return text[start:end], end + 1

    def _reference(self, m: re.Match[str], stack: tuple[str, ...]) -> str:
        syntax, semantic, conv = m.group("syntax", "semantic", "conv")
        if conv == "integer":
            conv = "int"
        if syntax in stack:
            chain = " -> ".join((*stack, syntax))
            raise GrokError(f"pattern {self.name!r}: recursive reference %{{{syntax}}} ({chain})")
        definition = self.patterns.get(syntax)
        if definition is None:
            where = f" (in %{{{stack[-1]}}})" if len(stack) > 1 else ""
            raise GrokError(f"pattern {self.name!r}: undefined pattern %{{{syntax}}}{where}")
        if semantic is None:
            body = self._plain.get(syntax)
            if body is None:
                before = len(self.specs)
                body = self.expand(definition, (*stack, syntax))
                if len(self.specs) == before:
                    self._plain[syntax] = body
            return f"(?:{body})"
        gname = self._group(semantic, conv)
        return f"(?P<{gname}>{self.expand(definition, (*stack, syntax))})"


# Oniguruma escapes Python lacks: \h is a hex digit, \z the very end.
_ESCAPES = {"\\z": "\\Z", "\\h": "[0-9a-fA-F]", "\\H": "[^0-9a-fA-F]"}
_CLASS_ESCAPES = {"\\h": "0-9a-fA-F"}


class Grok:
    """One compiled grok expression.

    ``match`` returns the captured fields (nested dicts for ``[a][b]`` names)
    or None; it raises GrokTimeout past ``timeout`` seconds.
    """

    __slots__ = ("expression", "name", "source", "_regex", "fast", "specs", "_names", "_fast")

    def __init__(self, expression: str, patterns: Mapping[str, str], name: str | None = None) -> None:
        self.expression = expression
        self.name = name or expression
        exp = _Expander(patterns, self.name)
        source = exp.expand(expression, (self.name,))
        self.source = source
        self._regex: Any = None
        #: The stdlib engine (twice as fast), used under budget.armed(); the regex module's
        #: copy (with its own timeout) is compiled on first need, off the main thread.
        try:
            self.fast: re.Pattern[str] | None = re.compile(source)
        except (re.error, OverflowError, RecursionError):
            self.fast = None
            self._compile_regex()
        compiled: Any = self.fast if self.fast is not None else self._regex
        index = compiled.groupindex
        self.specs = [CaptureSpec(index[g], path, conv) for g, path, conv in exp.specs]
        # Every group is a field, in order; flat, single, unconverted ones make a dict from zip().
        names = [s.path[0] for s in self.specs]
        self._names = names
        self._fast = (all(len(s.path) == 1 and s.conv is None for s in self.specs)
                      and len(set(names)) == len(names))

    def _compile_regex(self) -> Any:
        try:
            self._regex = regex.compile(self.source)
        except regex.error as exc:
            raise GrokError(f"pattern {self.name!r} is not a valid regular expression: {exc}") from None
        return self._regex

    @property
    def regex(self) -> Any:
        """The ``regex`` module's compiled expression (per-match timeout)."""
        return self._regex if self._regex is not None else self._compile_regex()

    @property
    def fields(self) -> list[str]:
        return ["".join(f"[{p}]" for p in s.path) if len(s.path) > 1 else s.path[0] for s in self.specs]

    def match(self, text: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Captures, or None; past ``timeout`` seconds GrokTimeout (None: no budget at all)."""
        fast = self.fast
        if fast is not None and (timeout is None or budget.watch.active):
            w = budget.watch
            if timeout is not None:
                w.limit = timeout
                w.seq += 1
                w.matching = True
            try:
                m = fast.search(text)
                w.matching = False
            except budget.Expired:
                raise GrokTimeout(f"{self.name}: no answer within {timeout}s") from None
        else:
            try:
                m = self.regex.search(text, timeout=timeout)
            except TimeoutError:
                raise GrokTimeout(f"{self.name}: no answer within {timeout}s") from None
        if m is None:
            return None
        if self._fast:
            return {k: v for k, v in zip(self._names, m.groups()) if v is not None}
        return self.captures(m)

    def captures(self, m: Any) -> dict[str, Any]:
        groups = m.groups()
        out: dict[str, Any] = {}
        for s in self.specs:
            value = groups[s.group - 1]
            if value is None:
                continue
            set_field(out, s.path, _convert(value, s.conv))
        return out


@dataclass
class GrokCache:
    """Compiled expressions by text, so one expression used by many types compiles once."""

    patterns: Mapping[str, str]
    compiled: dict[str, Grok] = field(default_factory=dict)

    def get(self, expression: str, name: str | None = None) -> Grok:
        g = self.compiled.get(expression)
        if g is None:
            g = self.compiled[expression] = Grok(expression, self.patterns, name)
        return g


def compile_grok(expression: str, patterns: Mapping[str, str], name: str | None = None) -> Grok:
    return Grok(expression, patterns, name)
