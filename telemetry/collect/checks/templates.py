"""Role templates as the agent reads them: the ``checks`` a node of that role runs.

A template (``rules/templates/<role>.yaml``) lists Zabbix item keys
(``{key: ..., interval: ...}``), low-level-discovery prototypes (a key with
``{#MACRO}`` and the ``discovery`` key whose rows fill it) and cloud health
checks (``{check: rabbitmq, ...}``). The rule engine reads the same files for
their triggers; here every entry is validated, so a typo in a check is an
error naming the template and the entry, not a check that silently never runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from telemetry.collect.checks.health import AnyHealthCheck, HealthCheck
from telemetry.collect.checks.keys import parse_key
from telemetry.config.base import Duration, Section
from telemetry.content import content_path

__all__ = ["ItemCheck", "RoleTemplate", "load_templates", "template_names"]


class ItemCheck(Section):
    """A Zabbix item key the agent evaluates itself; with ``discovery``, a prototype per discovered row."""

    key: str = Field(description="Item key; {#MACRO}s are filled from the discovery rule's rows")
    interval: Duration | None = Field(None, gt=0, description="Seconds between checks; default: checks.interval")
    discovery: str | None = Field(None, description="LLD key (vfs.fs.discovery, net.if.discovery) for prototypes")
    filter: dict[str, str] = Field(default_factory=dict, description="{#MACRO}: regex a row must match")

    @field_validator("key", "discovery")
    @classmethod
    def _syntax(cls, v: str | None) -> str | None:
        if v is not None:
            parse_key(re.sub(r"\{#[A-Z0-9_.]+\}", "x", v))  # KeyError_ (a ValueError) names the problem
        return v


_health = TypeAdapter(AnyHealthCheck)


class RoleTemplate(BaseModel):
    name: str
    source: str
    items: list[ItemCheck]
    health: list[HealthCheck]


def _entry(raw: Any, overrides: dict[str, dict[str, Any]]) -> ItemCheck | HealthCheck:
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping, got {raw!r}")
    if "check" in raw:
        label = str(raw.get("name") or raw["check"])
        return _health.validate_python({**raw, **overrides.get(label, {})})
    return ItemCheck.model_validate(raw)


def _template_files(dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        for f in sorted(d.glob("*.y*ml")) if d.is_dir() else []:
            try:
                doc = yaml.safe_load(f.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(doc, dict) and doc.get("template"):
                found.setdefault(str(doc["template"]), f)  # the first folder wins
    return found


def _dirs(paths: list[str] | None) -> list[Path]:
    return [Path(p).expanduser() for p in paths or []] + [content_path("rules") / "templates"]


def template_names(paths: list[str] | None = None) -> list[str]:
    """Templates found in ``paths`` and the shipped rules/templates."""
    return sorted(_template_files(_dirs(paths)))


def load_templates(names: list[str], paths: list[str] | None = None,
                   overrides: dict[str, dict[str, Any]] | None = None) -> tuple[list[RoleTemplate], list[str]]:
    """The named templates (searched in ``paths``, then the shipped rules/templates) and every problem found.

    A bad entry is left out and named in the problems; the template's good
    entries still run, as one bad rule never disables the rest.
    """
    dirs = _dirs(paths)
    files = _template_files(dirs)
    out: list[RoleTemplate] = []
    problems: list[str] = []
    for name in names:
        f = files.get(name)
        if f is None:
            problems.append(f"no template {name!r} in {', '.join(map(str, dirs))} (have: {', '.join(files) or 'none'})")
            continue
        doc = yaml.safe_load(f.read_text()) or {}
        items: list[ItemCheck] = []
        health: list[HealthCheck] = []
        for i, raw in enumerate(doc.get("checks") or []):
            try:
                e = _entry(raw, overrides or {})
            except (ValidationError, ValueError) as exc:
                problems.append(f"{f}: checks[{i}]: {exc}")
                continue
            (items if isinstance(e, ItemCheck) else health).append(e)  # type: ignore[arg-type]
        labels = [h.label for h in health]
        for dup in {x for x in labels if labels.count(x) > 1}:
            problems.append(f"{f}: two checks are named {dup!r}: give one a distinct name")
        out.append(RoleTemplate(name=name, source=str(f), items=items, health=health))
    return out, problems
