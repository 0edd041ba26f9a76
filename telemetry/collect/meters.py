"""Samples from OpenStack notifications, by declarative definitions in Ceilometer's ``meters.yaml`` form.

Each definition under ``metric:`` names a meter, the ``event_type``\\ s it is
taken from (regular expressions matched at the start, as Ceilometer does, so
``volume.create.*`` and ``compute.instance.(?!create.start|update).*`` both
work), its ``type`` and ``unit``, and where ``volume``, ``resource_id``,
``project_id``, ``user_id``, ``timestamp`` and ``metadata`` come from:
JSONPath into the notification (``$.payload.memory_mb``, ``$.ctxt.user_id``,
``$.publisher_id``) or a constant (``volume: 1``). ``lookup`` makes one sample
per element, as for Magnum's metric lists; ``user_metadata`` copies the
``metering.*`` keys of a server's metadata, which Heat autoscaling groups
query as ``metadata.user_metadata.<key>``.

Paths are Ceilometer's JSONPath dialect (``telemetry.collect.jsonpath``:
arithmetic, ``+`` joins and backtick functions included), and the trait
plugins meter definitions use (``timedelta``, ``split``) work as in
Ceilometer, so Ceilometer's own ``meters.yaml`` loads unchanged. A definition
that cannot work (missing field, bad type, an unknown plugin, a path neither
evaluator understands) is refused when the file loads, with its name and the
reason; the others still load, as in Ceilometer.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from telemetry.collect.jsonpath import ExtJsonPath, JsonPath, JsonPathError, compile_path
from telemetry.models import CounterType, Sample, derived_id

log = logging.getLogger(__name__)

REQUIRED = ("name", "type", "event_type", "unit", "volume", "resource_id")
ATTRIBUTES = ("name", "type", "unit", "volume", "resource_id", "project_id", "user_id", "timestamp")
#: Ceilometer's ``reserved_metadata_namespace`` default: server metadata keys kept for metering.
USER_METADATA_PREFIX = "metering."
USER_METADATA_MAX = 256


class MeterDefinitionError(ValueError):
    """A definition that cannot be used, named in the message."""


def _timedelta(values: list[Any]) -> list[Any]:
    """Ceilometer's ``timedelta`` trait plugin: seconds between two timestamps (booting time)."""
    from telemetry.timeutil import parse_timestamp

    if len(values) != 2:
        return []
    try:
        start, end = (parse_timestamp(str(v)) for v in values)
    except ValueError:
        return []
    return [abs((end - start).total_seconds())]


def _splitter(separator: str = ".", segment: int = 0, max_split: int | None = None) -> Callable[[list[Any]], list[Any]]:
    """Ceilometer's ``split`` trait plugin: one segment of each value."""
    def split(values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            parts = str(v).split(separator, -1 if max_split is None else max_split)
            out.append(parts[segment] if -len(parts) <= segment < len(parts) else None)
        return out

    return split


#: Ceilometer's trait plugins (``ceilometer.event.trait_plugin``) that meter definitions use.
PLUGINS: dict[str, Callable[..., Callable[[list[Any]], list[Any]]]] = {
    "timedelta": lambda: _timedelta,
    "split": _splitter,
}


class _Value:
    """A constant, a JSONPath, or ``{fields, plugin}``, as Ceilometer's ``declarative.Definition``."""

    def __init__(self, spec: Any, what: str) -> None:
        self.plugin: Callable[[list[Any]], list[Any]] | None = None
        if isinstance(spec, dict):
            if "fields" not in spec:
                raise MeterDefinitionError(f"{what}: 'fields' is required beside 'plugin'")
            self.plugin = self._plugin(spec.get("plugin"), what)
            spec = spec["fields"]
        if isinstance(spec, list):
            spec = spec[0] if len(spec) == 1 else " | ".join(f"({s})" for s in spec)
        self.path: JsonPath | ExtJsonPath | None = None
        self.const = spec
        if isinstance(spec, str) and spec.lstrip().startswith(("$", "(")):
            try:
                self.path = compile_path(spec)
            except JsonPathError as exc:
                raise MeterDefinitionError(f"{what}: {exc}") from None

    @staticmethod
    def _plugin(cfg: Any, what: str) -> Callable[[list[Any]], list[Any]] | None:
        if cfg is None:
            return None
        name, params = (cfg, {}) if isinstance(cfg, str) else (cfg.get("name"), cfg.get("parameters") or {})
        if name not in PLUGINS:
            raise MeterDefinitionError(f"{what}: no plugin named {name!r} (known: {', '.join(PLUGINS)})")
        try:
            return PLUGINS[name](**params)
        except TypeError as exc:
            raise MeterDefinitionError(f"{what}: plugin {name}: {exc}") from None

    def all(self, doc: Mapping[str, Any]) -> list[Any]:
        if self.path is None:
            return [self.const]
        values = self.path.find(doc)
        if self.plugin is not None:
            values = [v for v in self.plugin([v for v in values if v is not None]) if v is not None]
        return values

    def first(self, doc: Mapping[str, Any]) -> Any:
        if self.path is None:
            return self.const
        if self.plugin is None:
            return self.path.first(doc)
        return next(iter(self.all(doc)), None)


@dataclass
class MeterDefinition:
    """One ``metric:`` entry, compiled."""

    cfg: dict[str, Any]

    def __post_init__(self) -> None:
        name = self.cfg.get("name", "?")
        missing = [f for f in REQUIRED if self.cfg.get(f) in (None, "", [])]
        if missing:
            raise MeterDefinitionError(f"meter {name}: required fields missing: {', '.join(missing)}")
        lookup = self.cfg.get("lookup") or []
        self.lookup: list[str] = [lookup] if isinstance(lookup, str) else list(lookup)
        if "type" not in self.lookup and self.cfg["type"] not in CounterType.__members__:
            raise MeterDefinitionError(f"meter {name}: type must be gauge, delta or cumulative, not {self.cfg['type']!r}")
        types = self.cfg["event_type"]
        try:
            self.event_types = [re.compile(t) for t in ([types] if isinstance(types, str) else types)]
        except re.error as exc:
            raise MeterDefinitionError(f"meter {name}: bad event_type pattern: {exc}") from None
        self.attrs = {a: _Value(self.cfg[a], f"meter {name}.{a}") for a in ATTRIBUTES if a in self.cfg}
        self.metadata = {k: _Value(v, f"meter {name}.metadata.{k}") for k, v in (self.cfg.get("metadata") or {}).items()}
        um = self.cfg.get("user_metadata")
        self.user_metadata = _Value(um, f"meter {name}.user_metadata") if um else None
        self.fallback_user = _Value(["$.ctxt.user_id", "$.ctxt.user"], "user_id")
        self.fallback_project = _Value(["$.ctxt.project_id", "$.ctxt.tenant_id", "$.ctxt.tenant"], "project_id")

    @property
    def name(self) -> str:
        return str(self.cfg["name"])

    def matches(self, event_type: str) -> bool:
        return any(p.match(event_type) for p in self.event_types)

    def _metadata(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, p in self.metadata.items() if (v := p.first(doc)) not in (None, "", [], {})}
        if self.user_metadata is not None:
            src = self.user_metadata.first(doc)
            user = {
                k[len(USER_METADATA_PREFIX):].replace(".", "_"): str(v)[:USER_METADATA_MAX]
                for k, v in (src.items() if isinstance(src, Mapping) else ())
                if isinstance(k, str) and k.startswith(USER_METADATA_PREFIX)
            }
            if user:
                meta["user_metadata"] = user
        if not meta:  # Ceilometer's Sample.from_notification: then the payload is the metadata
            payload = doc.get("payload")
            meta = dict(payload) if isinstance(payload, Mapping) else {}
            meta["event_type"] = doc.get("event_type")
            meta["host"] = doc.get("publisher_id")
        return meta

    def raw_samples(self, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Sample fields (Ceilometer names) for one notification document; may be empty."""
        base = {
            "name": self.cfg["name"], "type": self.cfg["type"], "unit": self.cfg["unit"],
            "user_id": self.fallback_user.first(doc), "project_id": self.fallback_project.first(doc),
            "timestamp": (doc.get("metadata") or {}).get("timestamp"), "metadata": self._metadata(doc),
        }
        if not self.lookup:
            for a, p in self.attrs.items():
                v = p.first(doc)
                if v is not None:
                    base[a] = v
            return [base] if base.get("volume") is not None else []
        columns: dict[str, Any] = {}
        count = None
        for a in ATTRIBUTES:
            if a in self.lookup:
                values = self.attrs[a].all(doc) if a in self.attrs else []
                if count is not None and len(values) != count:
                    log.warning("meter %s: %d values for %s, %d for the others; skipped", self.name, len(values), a, count)
                    return []
                count = len(values)
                columns[a] = values
            else:
                v = self.attrs[a].first(doc) if a in self.attrs else None
                columns[a] = itertools.repeat(base.get(a) if v is None else v)
        out = []
        for row in zip(*columns.values()):
            s = {**base, **dict(zip(columns, row))}
            if s.get("volume") is not None:
                out.append(s)
        return out


def _to_sample(raw: dict[str, Any], notification_id: str, index: int) -> Sample:
    resource_id = raw.get("resource_id")
    if resource_id in (None, ""):
        raise ValueError("no resource_id")
    volume = float(raw["volume"])  # ValueError/TypeError for text volumes
    return Sample(
        counter_name=str(raw["name"]), counter_type=raw["type"], counter_unit=str(raw["unit"]),
        counter_volume=volume, resource_id=str(resource_id),
        project_id=None if raw.get("project_id") is None else str(raw["project_id"]),
        user_id=None if raw.get("user_id") is None else str(raw["user_id"]),
        source="openstack", timestamp=raw.get("timestamp"), resource_metadata=raw["metadata"],
        # Redelivery of the notification yields the same ids: the store dedups them.
        message_id=derived_id("notification-sample", notification_id, raw["name"], resource_id, index),
    )


class MeterMapping:
    """All definitions of a file (or several): ``samples`` maps one notification document."""

    def __init__(self, definitions: Iterable[MeterDefinition], errors: list[str] | None = None) -> None:
        self.definitions = list(definitions)
        self.errors = errors or []

    @classmethod
    def from_data(cls, data: Any, origin: str = "meters") -> MeterMapping:
        if not isinstance(data, Mapping) or not isinstance(data.get("metric"), list):
            raise MeterDefinitionError(f"{origin}: expected a 'metric:' list of meter definitions")
        defs, errors = [], []
        for i, cfg in enumerate(data["metric"]):
            try:
                if not isinstance(cfg, dict):
                    raise MeterDefinitionError(f"entry {i} is not a map")
                defs.append(MeterDefinition(dict(cfg)))
            except MeterDefinitionError as exc:
                errors.append(f"{origin}: {exc}")
        return cls(defs, errors)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> MeterMapping:
        defs: list[MeterDefinition] = []
        errors: list[str] = []
        for path in paths:
            m = cls.from_data(yaml.safe_load(Path(path).read_text()), str(path))
            defs.extend(m.definitions)
            errors.extend(m.errors)
        for e in errors:
            log.error("meter definition refused: %s", e)
        return cls(defs, errors)

    def samples(self, doc: Mapping[str, Any]) -> tuple[list[Sample], list[str]]:
        """Samples of one notification document, and the reasons of those that could not be built."""
        event_type = str(doc.get("event_type") or "")
        notification_id = str((doc.get("metadata") or {}).get("message_id") or "")
        good: list[Sample] = []
        bad: list[str] = []
        for d in self.definitions:
            if not d.matches(event_type):
                continue
            for i, raw in enumerate(d.raw_samples(doc)):
                try:
                    good.append(_to_sample(raw, notification_id, i))
                except (ValueError, TypeError) as exc:
                    bad.append(f"meter {d.name} from {event_type}: {exc}")
        return good, bad
