"""What ``check-config`` does with a YAML file that is not a daemon configuration.

Operators point ``check-config`` at whatever YAML they have open: the shipped
``collectors/meters.yaml``, a Ceilometer ``pipeline.yaml``, a rules file.
Validated as daemon settings such a file yields one "unknown setting" per top
key; better to say what kind of file it is, where the daemon reads it, and
check it with the loader the daemon itself uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemetry.config.model import Settings


@dataclass(frozen=True)
class FileKind:
    name: str
    #: Where the daemon reads such a file.
    used_by: str
    #: ``(problems, summary)`` from the daemon's own loader.
    check: Callable[[Path], tuple[list[str], str]]


def _check_meters(path: Path) -> tuple[list[str], str]:
    import yaml

    from telemetry.collect.meters import MeterDefinitionError, MeterMapping

    try:
        mapping = MeterMapping.from_data(yaml.safe_load(path.read_text()), str(path))
    except MeterDefinitionError as exc:
        return [str(exc)], ""
    return mapping.errors, f"{len(mapping.definitions)} meter definitions"


def _check_pipeline(path: Path) -> tuple[list[str], str]:
    from telemetry.meter.pipeline import PipelineError, load_pipeline

    try:
        defn = load_pipeline(path)
    except PipelineError as exc:
        return [str(exc)], ""
    return [], f"{len(defn.sources)} sources, {len(defn.sinks)} sinks"


def _check_rules(path: Path) -> tuple[list[str], str]:
    from telemetry.rules.loader import load_rules

    rs = load_rules([str(path)])
    return rs.errors, (f"{len(rs.alarms)} alarms, {len(rs.templates)} templates, "
                       f"{len(rs.host_triggers)} host triggers")


METERS = FileKind("file of Ceilometer meter definitions (meters.yaml form)",
                  "sources.notifications.meters lists such files", _check_meters)
PIPELINE = FileKind("Ceilometer sample pipeline (pipeline.yaml form)", "pipeline.file names such a file", _check_pipeline)
RULES = FileKind("rules file (alarms, triggers, templates)", "rules.paths lists such files or their folders", _check_rules)


def detect(data: Any) -> FileKind | None:
    """The kind of a YAML document that is not daemon settings; None when it may be settings."""
    if not isinstance(data, Mapping):
        return None
    keys = set(data)
    if keys & set(Settings.model_fields) and not isinstance(data.get("sources"), list):
        return None  # settings (perhaps with mistakes): validated as such, each mistake named
    if isinstance(data.get("metric"), list):
        return METERS
    if isinstance(data.get("sources"), list) or isinstance(data.get("sinks"), list):
        return PIPELINE
    if keys & {"alarms", "template", "triggers", "macros", "checks"}:
        return RULES
    return None
