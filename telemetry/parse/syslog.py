"""Syslog headers as event fields, and which parser reads the message behind them.

A syslog message is two things: an RFC 3164/5424 header (priority, time,
host, app name, procid, msgid, structured data) and the application's own
text. The header is read once, by the listener (``telemetry.collect.syslog``)
or by the header patterns of a syslog-framed file; the message is then parsed
by the type its app name selects (``proxy-server`` is Swift, ``haproxy`` is
HAProxy, ...), a map operators extend in ``parse.syslog_programs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from telemetry.syslog_programs import DEFAULT_PROGRAMS

__all__ = ["DEFAULT_PROGRAMS", "HEADER_FIELDS", "ProgramMap", "header_captures", "parse_structured_data"]

#: The RawLog extras a syslog listener fills (telemetry.collect.syslog), as the event keeps them.
HEADER_FIELDS = ("priority", "facility", "severity", "timestamp", "logsource", "program", "pid", "msgid",
                 "structured_data", "rfc")

#: RFC 5424 section 6.2.1, with rsyslog's short names.
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
              "local5", "local6", "local7")
SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")

_SD_ELEMENT = re.compile(r'\[([^\s\]=]+)((?:\s+[^\s\]=]+="(?:[^"\\]|\\.)*")*)\s*\]')
_SD_PARAM = re.compile(r'([^\s\]=]+)="((?:[^"\\]|\\.)*)"')
_SD_UNESCAPE = re.compile(r'\\([\\"\]])')
#: Structured data is bounded like any other input: past these the text is kept, not the dict.
MAX_SD_ELEMENTS, MAX_SD_PARAMS = 32, 64


def parse_structured_data(text: str) -> dict[str, dict[str, str]] | None:
    """``[id k="v"][id2 ...]`` as ``{"id": {"k": "v"}, ...}``; None when it is not well formed."""
    out: dict[str, dict[str, str]] = {}
    pos = 0
    params = 0
    while pos < len(text):
        m = _SD_ELEMENT.match(text, pos)
        if m is None or len(out) >= MAX_SD_ELEMENTS:
            return None
        element = out.setdefault(m.group(1), {})
        for k, v in _SD_PARAM.findall(m.group(2)):
            params += 1
            if params > MAX_SD_PARAMS:
                return None
            element[k] = _SD_UNESCAPE.sub(r"\1", v)
        pos = m.end()
    return out


def header_captures(extras: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields of a header the listener read (RawLog extras), or None for a record from a file."""
    if "rfc" not in extras and "priority" not in extras:
        return None
    caps: dict[str, Any] = {k: extras[k] for k in HEADER_FIELDS if extras.get(k) not in (None, "")}
    labels(caps)
    sd = caps.get("structured_data")
    if isinstance(sd, str):
        parsed = parse_structured_data(sd)
        if parsed:
            caps["sd"] = parsed
    return caps


def labels(caps: dict[str, Any]) -> None:
    """``facility``/``severity`` numbers (from ``priority`` when missing) and their names, as Logstash adds them."""
    try:
        pri = int(caps["priority"])
    except (KeyError, TypeError, ValueError):
        return
    if not 0 <= pri <= 191:
        return
    caps.setdefault("facility", pri >> 3)
    caps.setdefault("severity", pri & 7)
    caps["facility_label"] = FACILITIES[pri >> 3]
    caps["severity_label"] = SEVERITIES[pri & 7]


class ProgramMap:
    """App name -> type, by the first matching shell pattern; answers are cached (app names repeat)."""

    def __init__(self, programs: Mapping[str, str]) -> None:
        self.programs = list(programs.items())
        self._seen: dict[str, str | None] = {}

    def type_of(self, program: Any) -> str | None:
        if not isinstance(program, str) or not program:
            return None
        found = self._seen.get(program, "")
        if found != "":
            return found
        found = next((t for pat, t in self.programs if fnmatchcase(program, pat)), None)
        if len(self._seen) < 4096:
            self._seen[program] = found
        return found
