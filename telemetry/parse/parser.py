"""From a joined log entry to an Event: match list, syslog body, time budget, normalisation, steps.

One Parser serves every type; compiled expressions are shared between types
that use the same ones. It is pure CPU and keeps no per-entry state, so the
stage may run it in a worker thread.

An entry is read by its type (``parsers/types.yaml``): grok's match list, a
JSON object (``codec: json``), or a syslog header and then the message behind
it, parsed by the type the app name selects (``telemetry.parse.syslog``).
A record from the syslog listener arrives with its header already read.
Then ``@timestamp`` and, for the built-in types, ``level`` and ``component``
are filled in, and the configured processing steps run: once, here, so every
consumer of the event sees the same result.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from telemetry.fastcodec import event_dict
from telemetry.models import Event, RawLog
from telemetry.parse import budget
from telemetry.parse.dates import fast_zone, read_log_time
from telemetry.parse.grok import CONVERSION_FAILURES, INT_MAX, Grok, GrokCache, GrokTimeout
from telemetry.parse.jsonline import decode_object, event_fields
from telemetry.parse.literals import holds_one, literals_of_any
from telemetry.parse.normalise import normalise_fields
from telemetry.parse.patterns import PatternSet
from telemetry.parse.quick import quick_event, quick_grok
from telemetry.parse.steps import Steps, compile_steps
from telemetry.parse.syslog import DEFAULT_PROGRAMS, ProgramMap, header_captures, labels

if TYPE_CHECKING:
    from telemetry.config.parse import ParseConfig, Step

__all__ = ["CONVERSION_TAG", "DEFAULT_TIMEOUT", "FAILURE_TAG", "TIMEOUT_TAG", "Outcome", "Parser"]

FAILURE_TAG = "_grokparsefailure"
TIMEOUT_TAG = "_groktimeout"
DATE_FAILURE_TAG = "_dateparsefailure"
CONVERSION_TAG = "_grokconversionfailure"
#: Seconds one entry may spend in grok, all expressions of its match list together.
DEFAULT_TIMEOUT = 0.25


class Outcome:
    MATCH: Final = "match"
    FAILURE: Final = "failure"
    TIMEOUT: Final = "timeout"


def outcome_of(tags: Sequence[str]) -> str:
    """What grok made of an entry, from its event's tags (the parse stage counts each outcome by type)."""
    if TIMEOUT_TAG in tags:
        return Outcome.TIMEOUT
    if FAILURE_TAG in tags:
        return Outcome.FAILURE
    return Outcome.MATCH


@dataclass(frozen=True)
class _Plan:
    """One type, compiled."""

    match: list[Grok]
    body: list[Grok]  # the message behind a syslog header (the match list when the type has no body)
    message_match: list[Grok]  # tried on the captured message, adding what they capture
    syslog: bool
    json: bool
    fail_tags: list[str]
    break_on_match: bool
    #: Literals of which a message that any message_match expression matches holds one; None: no such set.
    message_needs: tuple[str, ...] | None = None


class _Timeout(Exception):
    pass


class Parser:
    """Parses entries of any known type, or with the operator's own expressions.

    ``patterns`` (``--pattern``) replace the type's match list; then only
    ``@timestamp`` is added, nothing captured is rewritten. ``types`` limits the
    types compiled to those a caller will name (``telemetry parse -t``): compiling
    every type's expressions was half the command's start; a syslog type keeps all,
    since the program behind each header picks the type of its message.
    """

    def __init__(
        self,
        patterns_dirs: Iterable[Path | str] = (),
        patterns: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        default_tz: tzinfo = timezone.utc,
        types_file: Path | None = None,
        steps: Sequence[Step] = (),
        type_steps: Mapping[str, Sequence[Step]] | None = None,
        programs: Mapping[str, str] | None = None,
        types: Collection[str] | None = None,
    ) -> None:
        self.library = PatternSet(patterns_dirs, types_file)
        self.cache = GrokCache(self.library.patterns)
        self.timeout = timeout
        self.default_tz = default_tz = fast_zone(default_tz)
        # Compile everything up front: a broken pattern fails at startup, not on the first line.
        self.user = [self.cache.get(p) for p in patterns]
        wanted = None if types is None else {self.library.canonical(t) for t in types}
        if wanted and any((td := self.library.typedef(t)) is not None and td.syslog for t in wanted):
            wanted = None
        # The header expressions read syslog-framed files: only a syslog type (which compiles all) uses them.
        self.header = [] if wanted is not None else [
            self.cache.get(e, f"syslog_header[{i}]") for i, e in enumerate(self.library.syslog_header)]
        self._plans: dict[str, _Plan] = {}
        for name, td in self.library.types.items():
            if wanted is not None and name not in wanted:
                continue
            match = [self.cache.get(e, f"{name}[{i}]") for i, e in enumerate(td.match)]
            body = [self.cache.get(e, f"{name}.body[{i}]") for i, e in enumerate(td.body)]
            inner = [self.cache.get(e, f"{name}.message_match[{i}]") for i, e in enumerate(td.message_match)]
            self._plans[name] = _Plan(match, body or ([] if td.syslog else match), inner, td.syslog,
                                      td.codec == "json", td.tag_on_failure, td.break_on_match,
                                      literals_of_any(g.needs for g in inner))
        self.programs = ProgramMap(programs if programs is not None else DEFAULT_PROGRAMS)
        self.steps = compile_steps(steps, default_tz)
        self.type_steps: dict[str, Steps] = {}
        for t, s in (type_steps or {}).items():
            if self.library.typedef(t) is None:
                raise ValueError(f"parse.types: unknown log type {t!r}; known: {', '.join(self.types)}")
            self.type_steps[self.library.canonical(t)] = compile_steps(s, default_tz)
        #: Types whose matched entries ``quick_event`` builds (no steps, no syslog header, plain captures).
        self._quick = {
            name: plan for name, plan in self._plans.items()
            if not (self.user or self.steps or self.type_steps.get(name) or plan.syslog or plan.json)
            and quick_grok([*plan.match, *plan.message_match])}

    @classmethod
    def from_config(cls, cfg: ParseConfig, patterns: Sequence[str] = (), types: Collection[str] | None = None
                    ) -> Parser:
        """The parser the ``parse`` section describes (the stage's, and ``telemetry parse -c``)."""
        return cls(patterns_dirs=cfg.patterns_dirs, patterns=patterns, timeout=cfg.timeout,
                   default_tz=ZoneInfo(cfg.timezone), steps=cfg.steps,
                   type_steps={t: tp.steps for t, tp in cfg.types.items()}, programs=cfg.syslog_programs,
                   types=types)

    @property
    def types(self) -> list[str]:
        """Every type the pattern library defines, compiled here or not."""
        return sorted(self.library.types)

    # -- grok ---------------------------------------------------------------------------------
    @staticmethod
    def _first(groks: list[Grok], text: str, deadline: float, break_on_match: bool = True) -> dict[str, Any] | None:
        """Captures of the first matching expression (all of them without break_on_match); None: no match."""
        found: dict[str, Any] | None = None
        for g in groks:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise GrokTimeout(g.name)
                caps = g.match(text, remaining)
            except GrokTimeout:
                raise _Timeout() from None
            if caps is not None:
                if found is None:
                    found = caps
                else:
                    found.update(caps)
                if break_on_match:
                    break
        return found

    def _body(self, caps: dict[str, Any], text: str, plan: _Plan | None, deadline: float) -> str | None:
        """Parse the message behind a syslog header into ``caps``; the type that read it, if any."""
        body_type = None
        if plan is None or not plan.body:
            body_type = self.programs.type_of(caps.get("program"))
            plan = self._plans.get(body_type) if body_type else None
        if plan is None or not plan.body:
            return None
        found = self._first(plan.body, text, deadline)
        if found is None:
            return None
        self._inner(found, plan, deadline)
        if "timestamp" in found and "timestamp" in caps:
            caps["syslog_timestamp"] = caps.pop("timestamp")  # the application's own time is more precise
        caps.update(found)
        return body_type

    def _inner(self, caps: dict[str, Any], plan: _Plan, deadline: float) -> None:
        """The type's message_match on the captured message (an access line inside an oslo.log line)."""
        message = caps.get("message")
        if plan.message_match and isinstance(message, str):
            needs = plan.message_needs
            if needs is not None and not holds_one(message, needs):  # most oslo messages: no grok is called
                return
            found = self._first(plan.message_match, message, deadline)
            if found is not None:
                caps.update(found)

    def _read(self, text: str, canonical: str, header: dict[str, Any] | None
              ) -> tuple[dict[str, Any], list[str], str, datetime | None]:
        """(captures, tags, the type that normalises them or "", an instant the entry names)."""
        deadline = time.monotonic() + self.timeout
        plan = self._plans.get(canonical)
        try:
            if header is not None:  # the listener read the header: only the message is left
                caps = dict(header)
                return caps, [], self._body(caps, text, plan, deadline) or canonical, None
            if plan is None:
                return {}, [FAILURE_TAG], "", None
            if plan.json:
                obj, tags = decode_object(text)
                if obj is None:
                    return {}, tags, "", None
                caps, when = event_fields(obj)
                self._inner(caps, plan, deadline)
                return caps, tags, canonical, when
            if plan.syslog:
                found = self._first(self.header, text, deadline)
                if found is None:
                    return {}, list(plan.fail_tags), "", None
                labels(found)
                message = found.get("message")
                body_type = self._body(found, message, plan, deadline) if isinstance(message, str) else None
                return found, [], body_type or canonical, None
        except _Timeout:
            return {}, [TIMEOUT_TAG], "", None
        return self._read_plain(text, canonical, plan, deadline)

    def _read_plain(self, text: str, canonical: str, plan: _Plan, deadline: float
                    ) -> tuple[dict[str, Any], list[str], str, datetime | None]:
        """``_read`` of a type read by its match list (no header, neither JSON nor syslog)."""
        try:
            found = self._first(plan.match, text, deadline, plan.break_on_match)
            if found is None:
                return {}, list(plan.fail_tags), "", None
            self._inner(found, plan, deadline)
            return found, [], canonical, None
        except _Timeout:
            return {}, [TIMEOUT_TAG], "", None

    # -- entries to events --------------------------------------------------------------------
    def parse(self, text: str | Sequence[str], type_: str = "", fields: Mapping[str, Any] | None = None,
              event_id: str = "", now: datetime | None = None, header: dict[str, Any] | None = None) -> Event | None:
        """One entry (text or its lines) to an Event (None: a drop step discarded it).

        ``fields`` (host, component, path, tags) carry over; ``header`` is a syslog
        header the listener already read (the entry is then its message).
        """
        if not isinstance(text, str):
            text = "\n".join(text)
        canonical = self.library.canonical(type_) if type_ else ""
        got = self._data(text, type_, canonical, self._grok(text, canonical, header), fields, event_id, now)
        return None if got is None else _event(got[0])

    def parse_dict(self, text: str | Sequence[str], type_: str = "", fields: Mapping[str, Any] | None = None,
                   event_id: str = "", now: datetime | None = None, with_id: bool = True,
                   header: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``parse(...).to_dict()``, built without the model when nothing needs converting (the hot path):
        a matched entry of a quick type in one dict (``telemetry.parse.quick``), the rest from ``_data``."""
        if not isinstance(text, str):
            text = "\n".join(text)
        canonical = self.library.canonical(type_) if type_ else ""
        quick = self._quick.get(canonical) if header is None else None
        if quick is not None and budget.watch.active:  # straight to the match list, under the caller's budget
            read = self._read_plain(text, canonical, quick, time.monotonic() + self.timeout)
        else:
            read = self._grok(text, canonical, header)
        if quick is not None and not read[1]:  # matched: no tags
            out = quick_event(text, canonical, read[0], fields, event_id, now, with_id, self.default_tz)
            if out is not None:
                return out
        got = self._data(text, type_, canonical, read, fields, event_id, now)
        if got is None:
            return None
        data, written = got
        out = event_dict(data, with_id, written)
        if out is None:
            out = _event(data).to_dict()
            if not with_id:
                del out["id"]
        return out

    def _grok(self, text: str, canonical: str, header: dict[str, Any] | None
              ) -> tuple[dict[str, Any], list[str], str, datetime | None]:
        """``_read``, or the operator's own expressions, under the time budget."""
        if self.user:
            caps, tags = self._user(text)
            return caps, tags, "", None
        if budget.watch.active:  # a caller armed it for the whole batch (the usual case)
            return self._read(text, canonical, header)
        with budget.armed():
            return self._read(text, canonical, header)

    def _data(self, text: str, type_: str, canonical: str,
              read: tuple[dict[str, Any], list[str], str, datetime | None],
              fields: Mapping[str, Any] | None, event_id: str, now: datetime | None
              ) -> tuple[dict[str, Any], str | None] | None:
        """The Event's data as grok (``read``), normalisation and the steps give it, before any validation,
        and its ``@timestamp`` as ``iso_utc`` writes it when that came with the reading (None otherwise)."""
        caps, tags, normalise_as, when = read
        data: dict[str, Any] = {"message": text, "type": canonical or type_}
        for k, v in (fields or {}).items():
            if k != "tags" and v not in (None, ""):
                data[k] = v
        failed = caps.pop(CONVERSION_FAILURES, None)
        if failed:
            tags.append(CONVERSION_TAG)
            data["grok_conversion_failures"] = failed
        if "path" in caps and "path" in data:
            data["log_path"] = data["path"]  # an access line's request path: the file's is kept beside it
        data.update(caps)
        data["tags"] = [*(fields or {}).get("tags", ()), *tags]
        if event_id:
            data["id"] = event_id
        written = self._timestamp(data, caps, now, when)
        stamp = data["@timestamp"]
        if normalise_as and caps:
            normalise_fields(data, caps, normalise_as)
        _bound_pid(data)
        if not self.user:
            type_steps = self.type_steps.get(canonical)
            if type_steps and not type_steps.run(data):
                return None
            if self.steps and not self.steps.run(data):
                return None
            if written is not None and data.get("@timestamp") is not stamp:
                written = None  # a step set another time
        return data, written

    def _user(self, text: str) -> tuple[dict[str, Any], list[str]]:
        """Captures of the operator's ``--pattern`` list, and tags."""
        deadline = time.monotonic() + self.timeout
        try:
            if budget.watch.active:
                found = self._first(self.user, text, deadline)
            else:
                with budget.armed():
                    found = self._first(self.user, text, deadline)
        except _Timeout:
            return {}, [TIMEOUT_TAG]
        return (found, []) if found is not None else ({}, [FAILURE_TAG])

    def parse_raw(self, raw: RawLog) -> Event | None:
        return self.parse(raw.lines, raw.type, _raw_fields(raw), event_id=raw.id, now=raw.read_at,
                          header=header_captures(raw.model_extra or {}))

    def parse_raw_dict(self, raw: RawLog) -> dict[str, Any] | None:
        """One record as the stage publishes it (None: dropped by a step)."""
        d = raw.__dict__
        return self.parse_values(d["id"], d["host"], d["path"], d["component"], d["type"], d["lines"], d["read_at"],
                                 d["tags"], raw.model_extra)

    def parse_values(self, id_: str, host: str, path: str, component: str, type_: str, lines: list[str],
                     read_at: datetime, tags: list[str], extra: dict[str, Any] | None) -> dict[str, Any] | None:
        """``parse_raw_dict`` of the RawLog with these values, without building it (a parse worker's entries)."""
        return self.parse_dict(lines, type_, _fields(host, component, path, tags, extra), event_id=id_, now=read_at,
                               header=header_captures(extra) if extra else None)

    def parse_raws_dicts(self, raws: Iterable[RawLog]) -> list[dict[str, Any] | None]:
        """``[e.to_dict() for e in parse_raws(raws)]``, without building the models when not needed."""
        with budget.armed():
            return [self.parse_raw_dict(r) for r in raws]

    def parse_raws(self, raws: Iterable[RawLog]) -> list[Event | None]:
        """A batch under one armed time budget (the fast engine, see budget.py)."""
        with budget.armed():
            return [self.parse_raw(r) for r in raws]

    def _timestamp(self, data: dict[str, Any], caps: Mapping[str, Any], now: datetime | None,
                   when: datetime | None) -> str | None:
        """Set ``@timestamp``; returns it as ``iso_utc`` writes it when the line's text gave that too."""
        raw = caps.get("timestamp")
        written = None
        if when is None and isinstance(raw, str):
            when, written = read_log_time(raw, self.default_tz, now)
            if when is None:
                data["tags"].append(DATE_FAILURE_TAG)
        data["@timestamp"] = when or now or datetime.now(timezone.utc)
        return written



def _raw_fields(raw: RawLog) -> dict[str, Any]:
    return _fields(raw.host, raw.component, raw.path, raw.tags, raw.model_extra)


def _fields(host: str, component: str, path: str, tags: list[str], extra: dict[str, Any] | None) -> dict[str, Any]:
    """What a RawLog carries into its event: where it came from, its tags, and any extra fields."""
    fields: dict[str, Any] = {"host": host, "component": component, "path": path, "tags": tags}
    if extra:
        for k, v in extra.items():
            fields.setdefault(k, v)
    return fields


def _bound_pid(data: dict[str, Any]) -> None:
    """A pid the Event's integer field cannot hold (not digits, beyond 64 bits) moves to ``pid_raw``."""
    pid = data.get("pid")
    if pid.__class__ is int and not -INT_MAX <= pid <= INT_MAX:
        data["pid_raw"] = str(data.pop("pid"))
    elif pid.__class__ is str and pid.isascii() and pid.isdigit() and len(pid) >= 19 and int(pid) > INT_MAX:
        data["pid_raw"] = data.pop("pid")


def _event(data: dict[str, Any]) -> Event:
    """The Event; a capture that does not fit a typed field (pid "abc", a list) moves to ``<name>_raw``."""
    for _ in range(3):
        try:
            return Event.model_validate(data)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad or not bad.isdisjoint({"@timestamp", "tags", "id"}):
                raise
            for name in bad:
                data[f"{name}_raw"] = data.pop(name)
    return Event.model_validate(data)
