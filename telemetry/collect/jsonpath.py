"""The small JSONPath subset Ceilometer's ``meters.yaml`` definitions use.

Ceilometer evaluates these with jsonpath-rw-ext (a ply grammar on top of the
unmaintained jsonpath-rw). The definitions use a handful of forms, so a
compiled evaluator of ~100 lines covers them without a parser generator, and
anything outside the subset is refused when the file loads (never ``eval``):

* ``$`` the notification; ``.name``, ``['name']``, ``."dotted.name"``;
* ``[0]``, ``[-1]``, ``[*]``, ``.*``, ``.[*]`` (each element / value);
* filters ``[?(@.name = 'cpu.percent')]`` and jsonpath-rw-ext's short form
  ``[?key=image_id]`` (``=``, ``==``, ``!=``);
* alternatives ``($.payload.a) | ($.payload.b)`` (a YAML list of paths in a
  definition): all matches of the first, then of the second, as jsonpath-rw's
  union. The parentheses are required: without them jsonpath-rw binds ``|``
  tighter than ``.``, so ``$.a.b | $.c`` would not mean what it seems.

Everything else Ceilometer's dialect accepts (arithmetic such as ``* 100``,
``+`` string joins, backtick functions such as ```split(#, 0, 1)```,
recursive ``..``, slices) is handed to jsonpath-rw-ext itself, the library
Ceilometer uses, so an operator's ``meters.yaml`` means here what it meant
there; only what neither understands is refused with :class:`JsonPathError`.
The fast evaluator stays in front because it is what the shipped
definitions use on every notification.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ExtJsonPath", "JsonPath", "JsonPathError", "compile_path"]

Step = Callable[[Any], Iterator[Any]]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<dot>\.(?!\.))
      | (?P<name>[A-Za-z_][\w\-:@]*)
      | (?P<quoted>'[^']*'|"[^"]*")
      | (?P<star>\*)
      | (?P<filter>\[\?\(?\s*(?:@\.)?(?P<fkey>[\w\-.:]+)\s*(?P<fop>==|=|!=)\s*(?P<fval>'[^']*'|"[^"]*"|[^\])]+?)\s*\)?\])
      | (?P<index>\[\s*-?\d+\s*\])
      | (?P<bstar>\[\s*\*\s*\])
      | (?P<bname>\[\s*(?:'[^']*'|"[^"]*")\s*\])
    )""",
    re.VERBOSE,
)


class JsonPathError(ValueError):
    """A path outside the supported subset, with the offending position."""


def _child(name: str) -> Step:
    def step(value: Any) -> Iterator[Any]:
        if isinstance(value, dict) and name in value:
            yield value[name]

    return step


def _each(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        yield from value
    elif isinstance(value, dict):
        yield from value.values()


def _index(i: int) -> Step:
    def step(value: Any) -> Iterator[Any]:
        if isinstance(value, list) and -len(value) <= i < len(value):
            yield value[i]

    return step


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "'\"":
        return text[1:-1]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _filter(key: str, op: str, raw: str) -> Step:
    want = _literal(raw)
    path = key.split(".")

    def pick(item: Any) -> Any:
        for part in path:
            if not isinstance(item, dict) or part not in item:
                return _MISSING
            item = item[part]
        return item

    def step(value: Any) -> Iterator[Any]:
        for item in _each(value):
            got = pick(item)
            if got is _MISSING:
                continue
            same = got == want or str(got) == str(want)
            if same == (op != "!="):
                yield item

    return step


_MISSING = object()


def _compile_one(text: str) -> list[Step]:
    src = text.strip()
    if src.startswith("(") and src.endswith(")"):
        src = src[1:-1].strip()
    if not src.startswith("$"):
        raise JsonPathError(f"a path starts with '$': {text!r}")
    steps: list[Step] = []
    pos, after_dot = 1, False
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            raise JsonPathError(f"unsupported JSONPath at {src[pos:pos + 20]!r} in {text!r}")
        kind = m.lastgroup if m.lastgroup not in ("fkey", "fop", "fval") else "filter"
        pos = m.end()
        if kind == "dot":
            if after_dot:
                raise JsonPathError(f"recursive descent '..' is not supported: {text!r}")
            after_dot = True
            continue
        if kind in ("name", "quoted", "star") and not after_dot:
            raise JsonPathError(f"expected '.' or '[' before {m.group(0).strip()!r} in {text!r}")
        after_dot = False
        if kind == "name":
            steps.append(_child(m.group("name")))
        elif kind == "quoted":
            steps.append(_child(m.group("quoted")[1:-1]))
        elif kind in ("star", "bstar"):
            steps.append(_each)
        elif kind == "index":
            steps.append(_index(int(m.group("index").strip("[] "))))
        elif kind == "bname":
            steps.append(_child(m.group("bname").strip("[] ")[1:-1]))
        else:
            steps.append(_filter(m.group("fkey"), m.group("fop"), m.group("fval")))
    if after_dot:
        raise JsonPathError(f"a path cannot end with '.': {text!r}")
    return steps


def _split_union(text: str) -> list[str]:
    """Top-level ``|`` alternatives (a ``|`` inside quotes or brackets is literal)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


class _Path:
    """``find`` gives every match, ``first`` the first non-null one."""

    def find(self, doc: Any) -> list[Any]:
        raise NotImplementedError

    def first(self, doc: Any) -> Any:
        for v in self.find(doc):
            if v is not None:
                return v
        return None


class JsonPath(_Path):
    """A path compiled by the fast evaluator."""

    def __init__(self, text: str) -> None:
        self.text = text
        parts = _split_union(text)
        if len(parts) > 1 and not all(p.strip().startswith("(") and p.strip().endswith(")") for p in parts):
            raise JsonPathError(f"write alternatives as ($.a) | ($.b), or as a YAML list: {text!r}")
        self._alternatives = [_compile_one(p) for p in parts]

    def find(self, doc: Any) -> list[Any]:
        out: list[Any] = []
        for steps in self._alternatives:
            values = [doc]
            for step in steps:
                values = [v for cur in values for v in step(cur)]
            out.extend(values)
        return out

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"


class ExtJsonPath(_Path):
    """A path in Ceilometer's full dialect, evaluated by jsonpath-rw-ext (as Ceilometer does)."""

    def __init__(self, text: str) -> None:
        from jsonpath_rw_ext import parser  # imported only when a definition needs it

        self.text = text
        try:
            self._find = parser.ExtentedJsonPathParser().parse(text).find
        except Exception as exc:  # ply raises bare Exceptions for syntax errors
            raise JsonPathError(f"not a JSONPath in Ceilometer's dialect either: {text!r}: {exc}") from None

    def find(self, doc: Any) -> list[Any]:
        try:
            return [m.value for m in self._find(doc)]
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError):
            return []  # a function applied to a value of the wrong type: no match, as a missing field

    def __repr__(self) -> str:
        return f"ExtJsonPath({self.text!r})"


_CACHE: dict[str, JsonPath | ExtJsonPath] = {}


def compile_path(text: str) -> JsonPath | ExtJsonPath:
    """A compiled (and cached) path: the fast evaluator when it can, jsonpath-rw-ext otherwise.

    Raises :class:`JsonPathError` for what neither understands.
    """
    path = _CACHE.get(text)
    if path is None:
        try:
            path = JsonPath(text)
        except JsonPathError:
            path = ExtJsonPath(text)
        _CACHE[text] = path
    return path
