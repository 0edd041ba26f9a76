"""Logstash's dissect: split text on literal delimiters, no regular expression involved.

``%{a} %{b} [%{c}]`` takes what lies between the delimiters, in order. As in
Logstash: ``%{}`` and ``%{?name}`` skip, ``%{+name}`` appends to ``name``
(``/N`` orders the parts), ``%{name->}`` also skips repeats of the delimiter
after it (padding), and ``%{?key}...%{&key}`` names a field by another's
value. Two fields with no delimiter between them cannot be told apart and are
refused at load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Dissector"]

_FIELD = re.compile(r"%\{([^}]*)\}")
_NAME = re.compile(r"^(?P<mod>[+?&*]?)(?P<name>[^/]*?)(?:/(?P<order>\d+))?(?P<pad>->)?$")


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # "" normal, "+" append, "?" skip or key, "&" value named by a key
    order: int
    pad: bool
    delimiter: str  # what ends it; "" for the last field, which takes the rest


class Dissector:
    def __init__(self, mapping: str, append_separator: str = " ") -> None:
        parts = _FIELD.split(mapping)
        self.prefix = parts[0]
        self.separator = append_separator
        fields: list[_Field] = []
        for i in range(1, len(parts), 2):
            m = _NAME.match(parts[i])
            if m is None:
                raise ValueError(f"invalid dissect field %{{{parts[i]}}}")
            delim = parts[i + 1]
            if not delim and i + 2 < len(parts):
                raise ValueError(f"dissect fields %{{{parts[i]}}} and %{{{parts[i + 2]}}} have no delimiter between them")
            kind = m.group("mod").replace("*", "?")
            name = m.group("name")
            if kind in ("+", "&") and not name:
                raise ValueError(f"dissect field %{{{parts[i]}}} needs a name")
            fields.append(_Field(name, kind, int(m.group("order") or 0), bool(m.group("pad")), delim))
        if not fields:
            raise ValueError("a dissect mapping needs at least one %{field}")
        self.fields = fields

    def __call__(self, text: str) -> dict[str, Any] | None:
        """The fields ``text`` splits into, or None when a delimiter is missing."""
        if not text.startswith(self.prefix):
            return None
        pos = len(self.prefix)
        out: dict[str, Any] = {}
        keys: dict[str, str] = {}
        appended: dict[str, list[tuple[int, str]]] = {}
        for f in self.fields:
            if not f.delimiter:
                value, pos = text[pos:], len(text)
            else:
                end = text.find(f.delimiter, pos)
                if end < 0:
                    return None
                value, pos = text[pos:end], end + len(f.delimiter)
                if f.pad:
                    while text.startswith(f.delimiter, pos):
                        pos += len(f.delimiter)
            if f.kind == "?":
                if f.name:
                    keys[f.name] = value
            elif f.kind == "+":
                appended.setdefault(f.name, []).append((f.order, value))
            elif f.kind == "&":
                key = keys.get(f.name)
                if key:
                    out[key] = value
            elif f.name:
                out[f.name] = value
        for name, values in appended.items():
            head = [out[name]] if isinstance(out.get(name), str) else []
            out[name] = self.separator.join(head + [v for _, v in sorted(values, key=lambda p: p[0])])
        return out
