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
  a capture that did not participate, or matched nothing, is left out
  (Logstash's ``keep_empty_captures`` false: its filter drops nil and empty
  values alike, so ``%{DATA:x}`` matching nothing sets no ``x``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry.parse import budget, onig
from telemetry.parse.literals import holds_one, required_literals

__all__ = ["CONVERSION_FAILURES", "CaptureSpec", "Grok", "GrokError", "GrokTimeout", "compile_grok", "set_field"]

_FIELD_PART = re.compile(r"\[([^\[\]]+)\]")


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


def set_field(target: dict[str, Any], path: tuple[str, ...], value: Any, append: bool = True) -> None:
    """Store one capture as Logstash does: a second value for a field makes a list (``append=False``: replaces)."""
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    last = path[-1]
    if append and last in node:
        old = node[last]
        if isinstance(old, list):
            old.append(value)
        else:
            node[last] = [old, value]
    else:
        node[last] = value


#: Where a Grok's captures list the fields whose ``:int``/``:float`` could not be kept as a number.
CONVERSION_FAILURES = "_grokconversionfailure"
#: A 64-bit signed integer: what every store and both wire formats hold.
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1


class _Unconvertible(ValueError):
    """A number out of range (beyond 64 bits, inf, nan): the capture stays text."""


def _convert(value: str, conv: str | None) -> Any:
    """Logstash's ``:int`` / ``:float``; text that is not a number stays text.

    A number no store can hold (an integer beyond 64 bits, a float that is
    inf or nan, or the ``int(float(...))`` of one) raises _Unconvertible: the
    caller keeps the text and tags the event, so one such line never fails
    the batch it travels in when the event is serialised.
    """
    if conv is None:
        return value
    try:
        if conv == "float":
            f = float(value)
            if f - f != 0:  # inf or nan
                raise _Unconvertible(value)
            return f
        try:
            i = int(value)
        except ValueError:
            f = float(value)  # Logstash's to_i truncates "3.5" to 3
            if f - f != 0:
                raise _Unconvertible(value) from None
            i = int(f)
        if not INT_MIN <= i <= INT_MAX:
            raise _Unconvertible(value)
        return i
    except _Unconvertible:
        raise
    except (ValueError, OverflowError):
        return value


class _Expander:
    """Turns one grok expression into a Python regex string plus its capture plan.

    Each definition is translated from Oniguruma once (``onig.translate``);
    expanding is then a walk over its tokens, references expanded in place.
    """

    def __init__(self, patterns: Mapping[str, str], name: str) -> None:
        self.patterns = patterns
        self.name = name
        self.specs: list[tuple[str, tuple[str, ...], str | None]] = []  # (group name, path, conv)
        self.by_name: dict[str, str] = {}  # field name -> its latest group, for \k<name>
        self._plain: dict[str, str] = {}  # capture-free definitions, expanded once
        self.needs_regex = False
        self.size = 0

    def _group(self, semantic: str, conv: str | None) -> str:
        gname = f"g{len(self.specs)}"
        self.specs.append((gname, field_path(semantic), conv))
        self.by_name[semantic] = gname
        return gname

    def translate(self, text: str, stack: tuple[str, ...]) -> onig.Translated:
        try:
            return onig.translate(text)
        except onig.UntranslatableError as exc:
            where = f" (in %{{{stack[-1]}}})" if len(stack) > 1 else ""
            raise GrokError(f"pattern {self.name!r}{where}: {exc}") from None

    def expand(self, text: str, stack: tuple[str, ...]) -> str:
        tr = self.translate(text, stack)
        self.needs_regex = self.needs_regex or tr.needs_regex
        out: list[str] = []
        for tok in tr.tokens:
            if tok.__class__ is str:
                out.append(str(tok))
            elif isinstance(tok, onig.Ref):
                out.append(self._reference(tok, stack))
            elif isinstance(tok, onig.Named):
                out.append(f"(?P<{self._group(tok.name, None)}>")
            else:
                assert isinstance(tok, (onig.BackRef, onig.CondRef))
                group = self.by_name.get(tok.name)
                if group is None:
                    raise GrokError(f"pattern {self.name!r}: reference to group {tok.name!r} before it is defined")
                out.append(f"(?P={group})" if isinstance(tok, onig.BackRef) else f"(?({group})")
        body = "".join(out)
        self.size += len(body)
        if self.size > MAX_SOURCE:
            raise GrokError(f"pattern {self.name!r} expands to more than {MAX_SOURCE} characters of regex")
        return body

    def _reference(self, ref: onig.Ref, stack: tuple[str, ...]) -> str:
        syntax, semantic, conv = ref.syntax, ref.semantic, ref.conv
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
                if len(self.specs) == before and not self.translate(definition, stack).has_captures:
                    self._plain[syntax] = body
            else:
                self.size += len(body)
                if self.size > MAX_SOURCE:
                    raise GrokError(f"pattern {self.name!r} expands to more than {MAX_SOURCE} characters of regex")
            return f"(?:{body})"
        gname = self._group(semantic, conv)
        return f"(?P<{gname}>{self.expand(definition, (*stack, syntax))})"


#: An expression whose expansion outgrows this is refused (a pattern that doubles at each level).
MAX_SOURCE = 1 << 20


def _compile_quietly(engine: Any, source: str) -> Any:
    """Compile with every warning an error: nothing reaches the operator's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return engine.compile(source)


class Grok:
    """One compiled grok expression.

    ``match`` returns the captured fields (nested dicts for ``[a][b]`` names)
    or None; it raises GrokTimeout past ``timeout`` seconds.
    """

    __slots__ = ("expression", "name", "source", "_regex", "fast", "specs", "_names", "_fast", "_convs", "_dups",
                 "needs")

    def __init__(self, expression: str, patterns: Mapping[str, str], name: str | None = None) -> None:
        self.expression = expression
        self.name = name or expression
        exp = _Expander(patterns, self.name)
        try:
            source = exp.expand(expression, (self.name,))
        except RecursionError:
            raise GrokError(f"pattern {self.name!r} nests references too deeply") from None
        self.source = source
        self._regex: Any = None
        #: The stdlib engine (twice as fast), used under budget.armed(); the regex module's
        #: copy (with its own timeout) is compiled on first need, off the main thread.
        self.fast: re.Pattern[str] | None = None
        if not exp.needs_regex:
            try:
                self.fast = _compile_quietly(re, source)
            except (re.error, OverflowError, RecursionError, Warning, ValueError, TypeError):
                pass  # e.g. a variable-width look-behind: the regex module reads it
        #: Literals of which a matching text holds one (``literals``): without any, no engine runs.
        self.needs = required_literals(self.fast) if self.fast is not None else None
        # The regex module's copy from what _compile_regex returns, not from the attribute: mypy takes
        # self._regex for the None assigned above, and compiled (telemetry._native) that is checked.
        compiled: Any = self.fast if self.fast is not None else self._compile_regex()
        index = compiled.groupindex
        self.specs = [CaptureSpec(index[g], path, conv) for g, path, conv in exp.specs]
        # Every group is a field, in order; flat, single, unconverted ones make a dict from zip().
        names = [s.path[0] for s in self.specs]
        self._names = names
        # Flat names make a dict from zip(); then the few typed ones are converted, and a name that
        # several alternatives capture (only one usually takes part) is checked for a second value.
        convs: dict[str, str | None] = {}
        for s in self.specs:
            convs.setdefault(s.path[0], s.conv)
        self._fast = (all(len(s.path) == 1 and s.conv == convs[s.path[0]] for s in self.specs))
        self._convs = [(n, c) for n, c in convs.items() if c is not None]
        self._dups = len(convs) != len(self.specs)

    def _compile_regex(self) -> Any:
        import regex  # on first need: most expressions never use it, and its import is 9 ms of every start

        try:
            self._regex = _compile_quietly(regex, self.source)
        except (regex.error, OverflowError, RecursionError, Warning, ValueError, TypeError) as exc:
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
        needs = self.needs
        if needs is not None and not holds_one(text, needs):
            return None
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
            groups = m.groups()
            out = {k: v for k, v in zip(self._names, groups) if v}  # text or None: "" is left out too
            if self._dups and len(out) != len(groups) - groups.count(None) - groups.count(""):
                return self.captures(m)  # a name took two values: Logstash makes a list
            if self._convs:
                for name, conv in self._convs:
                    v = out.get(name)
                    if v is not None:
                        try:
                            out[name] = _convert(v, conv)
                        except _Unconvertible:
                            return self.captures(m)
            return out
        return self.captures(m)

    def captures(self, m: Any) -> dict[str, Any]:
        groups = m.groups()
        out: dict[str, Any] = {}
        failed: list[str] | None = None
        for s in self.specs:
            value = groups[s.group - 1]
            if not value:  # did not take part, or took part matching nothing (keep_empty_captures false)
                continue
            try:
                set_field(out, s.path, _convert(value, s.conv))
            except _Unconvertible:
                set_field(out, s.path, value)
                failed = failed or []
                failed.append(".".join(s.path))
        if failed:
            out[CONVERSION_FAILURES] = failed
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
