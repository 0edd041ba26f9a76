"""From a joined log entry to an Event: match list, time budget, normalisation.

One Parser serves every type; compiled expressions are shared between types
that use the same ones. It is pure CPU and keeps no per-entry state, so the
stage may run it in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from telemetry.models import Event, RawLog, event_dict
from telemetry.parse import budget
from telemetry.parse.dates import parse_log_time
from telemetry.parse.grok import Grok, GrokCache, GrokTimeout
from telemetry.parse.normalise import normal_level, service_of_logger, syslog_severity_level
from telemetry.parse.patterns import PatternSet

__all__ = ["DEFAULT_TIMEOUT", "FAILURE_TAG", "TIMEOUT_TAG", "Outcome", "Parser"]

FAILURE_TAG = "_grokparsefailure"
TIMEOUT_TAG = "_groktimeout"
DATE_FAILURE_TAG = "_dateparsefailure"
#: Seconds one entry may spend in grok, all expressions of its match list together.
DEFAULT_TIMEOUT = 0.25

_SYSLOG_TYPES = frozenset({"syslog", "swift", "haproxy"})
#: Component of entries read without one, for types that name their source.
_TYPE_COMPONENT = {"rabbitmq": "rabbitmq", "mariadb": "mariadb", "libvirt": "libvirt", "ovs": "openvswitch",
                   "apache": "apache"}


class Outcome:
    MATCH = "match"
    FAILURE = "failure"
    TIMEOUT = "timeout"


def outcome_of(event: Event) -> str:
    if TIMEOUT_TAG in event.tags:
        return Outcome.TIMEOUT
    if FAILURE_TAG in event.tags:
        return Outcome.FAILURE
    return Outcome.MATCH


class Parser:
    """Parses entries of any known type, or with the operator's own expressions.

    ``patterns`` (``--pattern``) replace the type's match list; then only
    ``@timestamp`` is added, nothing captured is rewritten.
    """

    def __init__(
        self,
        patterns_dirs: Iterable[Path | str] = (),
        patterns: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        default_tz: tzinfo = timezone.utc,
        types_file: Path | None = None,
    ) -> None:
        self.library = PatternSet(patterns_dirs, types_file)
        self.cache = GrokCache(self.library.patterns)
        self.timeout = timeout
        self.default_tz = default_tz
        # Compile everything up front: a broken pattern fails at startup, not on the first line.
        self.user = [self.cache.get(p) for p in patterns]
        self._lists: dict[str, tuple[list[Grok], list[str], bool]] = {}
        for name, td in self.library.types.items():
            self._lists[name] = ([self.cache.get(e, f"{name}[{i}]") for i, e in enumerate(td.match)],
                                 td.tag_on_failure, td.break_on_match)

    @property
    def types(self) -> list[str]:
        return sorted(self._lists)

    def match_list(self, type_: str) -> tuple[list[Grok], list[str], bool, bool]:
        """(expressions, failure tags, break_on_match, built-in?) for an entry of ``type_``."""
        if self.user:
            return self.user, [FAILURE_TAG], True, False
        found = self._lists.get(self.library.canonical(type_))
        if found is None:
            return [], [FAILURE_TAG], True, False
        return (*found, True)

    def grok(self, text: str, type_: str) -> tuple[dict[str, Any], list[str], bool]:
        """Captures of the first matching expression (all of them without break_on_match), tags, built-in?"""
        groks, fail_tags, break_on_match, builtin = self.match_list(type_)
        deadline = time.monotonic() + self.timeout
        found: dict[str, Any] = {}
        matched = False
        for g in groks:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise GrokTimeout(g.name)
                caps = g.match(text, remaining)
            except GrokTimeout:
                return {}, [TIMEOUT_TAG], builtin
            if caps is not None:
                matched = True
                found.update(caps)
                if break_on_match:
                    break
        return found, ([] if matched else list(fail_tags)), builtin

    def parse(self, text: str | Sequence[str], type_: str = "", fields: Mapping[str, Any] | None = None,
              event_id: str = "", now: datetime | None = None) -> Event:
        """One entry (text or its lines) to an Event; ``fields`` (host, component, path, tags) carry over."""
        return _event(self._data(text, type_, fields, event_id, now))

    def parse_dict(self, text: str | Sequence[str], type_: str = "", fields: Mapping[str, Any] | None = None,
                   event_id: str = "", now: datetime | None = None, with_id: bool = True) -> dict[str, Any]:
        """``parse(...).to_dict()``, built without the model when nothing needs converting (the hot path)."""
        data = self._data(text, type_, fields, event_id, now)
        out = event_dict(data, with_id)
        if out is None:
            out = _event(data).to_dict()
            if not with_id:
                del out["id"]
        return out

    def _data(self, text: str | Sequence[str], type_: str, fields: Mapping[str, Any] | None,
              event_id: str, now: datetime | None) -> dict[str, Any]:
        """The Event's data as grok and normalisation give it, before any validation."""
        if not isinstance(text, str):
            text = "\n".join(text)
        canonical = self.library.canonical(type_) if type_ else ""
        if budget.watch.active:  # a caller armed it for the whole batch (the usual case)
            caps, tags, builtin = self.grok(text, type_)
        else:
            with budget.armed():
                caps, tags, builtin = self.grok(text, type_)
        data: dict[str, Any] = {"message": text, "type": canonical or type_}
        for k, v in (fields or {}).items():
            if k != "tags" and v not in (None, ""):
                data[k] = v
        data.update(caps)
        data["tags"] = [*(fields or {}).get("tags", ()), *tags]
        if event_id:
            data["id"] = event_id
        self._timestamp(data, caps, now)
        if builtin and caps:
            self._normalise(data, caps, canonical)
        return data

    def parse_raw(self, raw: RawLog) -> Event:
        fields = {"host": raw.host, "component": raw.component, "path": raw.path, "tags": raw.tags}
        return self.parse(raw.lines, raw.type, fields, event_id=raw.id, now=raw.read_at)

    def parse_raws_dicts(self, raws: Iterable[RawLog]) -> list[dict[str, Any]]:
        """``[e.to_dict() for e in parse_raws(raws)]``, without building the models when not needed."""
        with budget.armed():
            return [self.parse_dict(r.lines, r.type, {"host": r.host, "component": r.component, "path": r.path,
                                                      "tags": r.tags}, event_id=r.id, now=r.read_at)
                    for r in raws]

    def parse_raws(self, raws: Iterable[RawLog]) -> list[Event]:
        """A batch under one armed time budget (the fast engine, see budget.py)."""
        with budget.armed():
            return [self.parse_raw(r) for r in raws]

    def _timestamp(self, data: dict[str, Any], caps: Mapping[str, Any], now: datetime | None) -> None:
        raw = caps.get("timestamp")
        when = None
        if isinstance(raw, str):
            when = parse_log_time(raw, self.default_tz, now)
            if when is None:
                data["tags"].append(DATE_FAILURE_TAG)
        data["@timestamp"] = when or now or datetime.now(timezone.utc)

    @staticmethod
    def _normalise(data: dict[str, Any], caps: Mapping[str, Any], type_: str) -> None:
        level = normal_level(caps.get("loglevel"), type_)
        if level is None and "priority" in caps:
            level = syslog_severity_level(caps["priority"])
        if level is not None:
            data["level"] = level
        if not data.get("component"):
            component = (service_of_logger(caps.get("logger")) if type_ == "openstack"
                         else caps.get("program") if type_ in _SYSLOG_TYPES else _TYPE_COMPONENT.get(type_))
            if component:
                data["component"] = component
        if not data.get("host") and isinstance(caps.get("logsource"), str):
            data["host"] = caps["logsource"]


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
