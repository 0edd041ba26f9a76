"""Zabbix item keys: ``name[param,"quoted, param",[array,param]]``.

The grammar is Zabbix's (``parse_key`` in its sources): a key name of
letters, digits and ``_-.``; parameters separated by commas; a parameter is
unquoted (leading spaces dropped, no ``,`` or ``]``), quoted (``\\"`` escapes a
quote), or one level of ``[...]`` array. Templates, the passive listener,
the poller and active checks all read keys through this one parser, so a key
means the same wherever it is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ItemKey", "KeyError_", "parse_key"]

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class KeyError_(ValueError):
    """An item key that does not follow the syntax; the message says where."""


@dataclass(frozen=True)
class ItemKey:
    name: str
    params: tuple[str | tuple[str, ...], ...] = ()
    text: str = ""

    def param(self, i: int, default: str = "") -> str:
        """Parameter ``i`` as text ('' or ``default`` when absent or empty); arrays are refused."""
        if i >= len(self.params):
            return default
        v = self.params[i]
        if isinstance(v, tuple):
            raise KeyError_(f"parameter {i + 1} of {self.text} must not be an array")
        return v or default

    def __str__(self) -> str:
        return self.text


def _quoted(text: str, i: int) -> tuple[str, int]:
    out = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] == '"':
            out.append('"')
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise KeyError_("unterminated quoted parameter")


def _params(text: str, i: int, nested: bool) -> tuple[list[str | tuple[str, ...]], int]:
    """Parameters from just after ``[`` up to and including the closing ``]``."""
    out: list[str | tuple[str, ...]] = []
    while True:
        while i < len(text) and text[i] == " ":
            i += 1
        if i >= len(text):
            raise KeyError_("missing ']'")
        c = text[i]
        value: str | tuple[str, ...]
        if c == '"':
            value, i = _quoted(text, i)
            while i < len(text) and text[i] == " ":
                i += 1
        elif c == "[":
            if nested:
                raise KeyError_("arrays cannot be nested")
            inner, i = _params(text, i + 1, True)
            value = tuple(str(x) for x in inner)
            while i < len(text) and text[i] == " ":
                i += 1
        else:
            j = i
            while j < len(text) and text[j] not in ",]":
                j += 1
            value, i = text[i:j].rstrip(" ") if text[i:j].strip() else "", j
            if '"' in value:
                raise KeyError_(f"a quote inside an unquoted parameter: {value!r}")
        out.append(value)
        if i >= len(text):
            raise KeyError_("missing ']'")
        if text[i] == "]":
            return out, i + 1
        if text[i] != ",":
            raise KeyError_(f"unexpected {text[i]!r} at position {i}")
        i += 1


def parse_key(text: str) -> ItemKey:
    """The key's name and parameters, or KeyError_ naming what is wrong."""
    text = text.strip()
    m = _NAME.match(text)
    if not m:
        raise KeyError_(f"invalid item key {text!r}: it must start with a name of letters, digits, '_', '-', '.'")
    name, i = m.group(0), m.end()
    if i == len(text):
        return ItemKey(name, (), text)
    if text[i] != "[":
        raise KeyError_(f"invalid item key {text!r}: unexpected {text[i]!r} after the name")
    try:
        params, end = _params(text, i + 1, False)
    except KeyError_ as exc:
        raise KeyError_(f"invalid item key {text!r}: {exc}") from None
    if end != len(text):
        raise KeyError_(f"invalid item key {text!r}: text after the closing ']'")
    return ItemKey(name, tuple(params), text)


def quote_param(value: str) -> str:
    """A parameter written back so ``parse_key`` reads it unchanged (used by discovery)."""
    if value and not any(c in value for c in ',]["') and not value.startswith(" "):
        return value
    return '"' + value.replace('"', '\\"') + '"'
