"""Text formats operators write in the parse section: dissect mappings and date-filter formats.

Both are read once, when the configuration is validated (so a bad one is an
error naming its step) and again when the steps are compiled; they live
outside ``telemetry.parse`` so the configuration models can check them
without importing the parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

__all__ = ["Dissector", "compile_format"]

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def _zone(text: str, default_tz: tzinfo) -> tzinfo:
    if text == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(minutes=int(digits[:2]) * 60 + int(digits[2:4] or 0)))


def _iso8601(v: Any, tz: tzinfo) -> datetime | None:
    """Logstash's ISO8601 format: the zone if written, else ``tz``."""
    if not isinstance(v, str):
        return None
    try:
        dt = datetime.fromisoformat(v.strip().replace(",", "."))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).astimezone(timezone.utc)


# -- dissect ---------------------------------------------------------------------------------------
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


# -- date-filter formats (Joda-Time patterns) ---------------------------------------------------
_JODA = re.compile(r"'[^']*'|([A-Za-z])\1*|[^'A-Za-z]+")
_JODA_PARTS = {
    "yyyy": r"(?P<y>\d{4})", "yy": r"(?P<yy>\d{2})", "y": r"(?P<y>\d{1,4})",
    "MMMM": r"(?P<mon>[A-Za-z]+)", "MMM": r"(?P<mon>[A-Za-z]{3})", "MM": r"(?P<mo>\d{2})", "M": r"(?P<mo>\d{1,2})",
    "dd": r"(?P<d>\d{2})", "d": r"(?P<d>\d{1,2})", "HH": r"(?P<h>\d{2})", "H": r"(?P<h>\d{1,2})",
    "hh": r"(?P<h12>\d{2})", "h": r"(?P<h12>\d{1,2})", "mm": r"(?P<mi>\d{2})", "m": r"(?P<mi>\d{1,2})",
    "ss": r"(?P<s>\d{2})", "s": r"(?P<s>\d{1,2})", "a": r"(?P<ampm>[AaPp][Mm])",
    "Z": r"(?P<z>Z|[+-]\d{2}:?\d{2})", "ZZ": r"(?P<z>Z|[+-]\d{2}:?\d{2})", "ZZZ": r"(?P<zid>[A-Za-z_/+-]+)",
}


def compile_format(fmt: str) -> Callable[[Any, tzinfo], datetime | None]:
    """A parser for one date-filter format: ISO8601, UNIX, UNIX_MS or a Joda-Time pattern.

    Raises ValueError for a pattern letter we do not read, so the step fails at load.
    """
    if fmt == "ISO8601":
        return _iso8601
    if fmt in ("UNIX", "UNIX_MS"):
        scale = 1000.0 if fmt == "UNIX_MS" else 1.0

        def epoch(v: Any, tz: tzinfo) -> datetime | None:
            try:
                seconds = float(v) / scale
                return datetime.fromtimestamp(seconds, timezone.utc) if 0 <= seconds < 1e11 else None
            except (TypeError, ValueError, OverflowError):
                return None
        return epoch
    out: list[str] = []
    for tok in (m.group(0) for m in _JODA.finditer(fmt)):
        if tok.startswith("'"):
            out.append(re.escape(tok[1:-1] or "'"))
        elif tok[0] == "S":
            out.append(rf"(?P<frac>\d{{{len(tok)}}})")
        elif tok[0] == "E":
            out.append(r"[A-Za-z]+")
        elif tok[0].isalpha():
            part = _JODA_PARTS.get(tok)
            if part is None:
                raise ValueError(f"date format {fmt!r}: pattern {tok!r} is not supported")
            out.append(part)
        else:
            out.append(re.escape(tok))
    try:
        rx = re.compile("".join(out) + "$")
    except re.error:
        raise ValueError(f"date format {fmt!r} uses a field twice") from None

    def joda(v: Any, tz: tzinfo) -> datetime | None:
        m = rx.match(v.strip()) if isinstance(v, str) else None
        if m is None:
            return None
        g = m.groupdict()
        try:
            year = int(g["y"]) if g.get("y") else 2000 + int(g["yy"]) if g.get("yy") else datetime.now(timezone.utc).year
            month = _MONTHS.get((g.get("mon") or "")[:3].lower()) or int(g.get("mo") or 1)
            hour = int(g.get("h") or 0)
            if g.get("h12"):
                hour = int(g["h12"]) % 12 + (12 if (g.get("ampm") or "").lower() == "pm" else 0)
            dt = datetime(year, month, int(g.get("d") or 1), hour, int(g.get("mi") or 0), int(g.get("s") or 0),
                          int((g.get("frac") or "0")[:6].ljust(6, "0")))
            zone: tzinfo = tz
            if g.get("z"):
                zone = _zone(g["z"], tz)
            elif g.get("zid"):
                from zoneinfo import ZoneInfo
                zone = timezone.utc if g["zid"] in ("UTC", "Z", "GMT") else ZoneInfo(g["zid"])
            return dt.replace(tzinfo=zone).astimezone(timezone.utc)
        except (ValueError, KeyError, OverflowError):
            return None
    return joda
