"""Reading, validating and explaining the configuration.

Errors are collected, not raised one at a time: an operator fixing a file
wants every problem in one run, each with its field path and the value found.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from telemetry._native import ENV as NATIVE_ENV
from telemetry.config.base import redact_url
from telemetry.errors import format_loc
from telemetry.config.model import Settings

ENV_PREFIX = "TELEMETRY_"
#: Variables with the prefix that are not settings: the config file's own, and the query
#: commands' client variables (README: ``TELEMETRY_URL``, ``TELEMETRY_TOKEN``), and the switch of the
#: compiled modules (``telemetry._native``). A daemon started from the same shell as the CLI must not
#: read them as the settings ``url`` and ``token``.
ENV_RESERVED = frozenset({"TELEMETRY_CONFIG", "TELEMETRY_URL", "TELEMETRY_TOKEN", NATIVE_ENV})
#: Key names whose values are never printed.
SECRET_KEYS = ("token", "password", "secret", "api_key", "routing_key", "passwd")
#: Values longer than this are cut in messages: a whole file read as a value is no help in a terminal.
SHOWN_CHARS = 120
#: Values an example config ships for the operator to replace.
PLACEHOLDER = re.compile(r"CHANGE_?ME", re.IGNORECASE)


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str
    value: Any = None
    has_value: bool = False
    #: The environment variable the value came from; empty for the file.
    variable: str = ""

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.variable:
            where = f"{self.variable} ({where})"
        if self.has_value:
            return f"{where}: {self.message} (got {shown(self.value)})"
        return f"{where}: {self.message}"


def shown(value: Any) -> str:
    """``repr`` of a value, cut to :data:`SHOWN_CHARS`."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ..."


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every error found."""

    def __init__(self, source: str, problems: list[ConfigProblem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))


def is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in SECRET_KEYS)


def redact(value: Any, key: str = "") -> Any:
    """Mask secrets in a plain structure: secret keys, and passwords in URLs."""
    if key and is_secret_key(key) and value not in (None, "", [], {}):
        return "**********"
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``TELEMETRY_API__PORT=9000`` -> ``{"api": {"port": 9000}}`` (values read as YAML).

    Also returns which variable set each path, so an error names the variable
    the operator has to fix rather than the file that does not hold the value.
    """
    tree: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                break
        else:
            node[keys[-1]] = value
            origins[tuple(keys)] = name
    return tree, origins


def _variable_of(loc: tuple[Any, ...], origins: Mapping[tuple[str, ...], str]) -> str:
    """The variable whose path is ``loc`` or holds it (``TELEMETRY_API`` for ``api.port``)."""
    parts = tuple(str(p) for p in loc)
    for n in range(len(parts), 0, -1):
        if parts[:n] in origins:
            return origins[parts[:n]]
    return ""


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigProblem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem(where, f"invalid YAML: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "the file must hold a mapping of sections", data, True)])
    return data


def validate(data: Mapping[str, Any], source: str = "<config>",
             origins: Mapping[tuple[str, ...], str] | None = None) -> Settings:
    """Settings from plain data; ``origins`` names the variable behind each overridden path."""
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = format_loc(err["loc"])
            value = err.get("input")
            secret = any(isinstance(p, str) and is_secret_key(p) for p in err["loc"])
            shown_value = "**********" if secret else redact(value)
            has_value = err["type"] != "missing"
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (check the spelling against docs/configuration.md)"
            variable = _variable_of(tuple(err["loc"]), origins or {})
            problems.append(ConfigProblem(loc, msg, shown_value, has_value, variable))
        if problems and all(p.variable for p in problems):
            source = "the environment"
        raise ConfigError(source, problems) from None


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read YAML (optional), apply TELEMETRY_* overrides, validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        data = read_yaml(Path(path))
        source = str(path)
    overrides, origins = _env_overrides(env)
    if overrides:
        data = _merge(data, overrides)
    return validate(data, source, origins)


def placeholders(data: Any, path: str = "") -> list[ConfigProblem]:
    """Values still holding an example's ``CHANGE_ME``: the broker would refuse them, or worse, accept them."""
    found: list[ConfigProblem] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            found += placeholders(v, f"{path}.{k}" if path else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += placeholders(v, f"{path}[{i}]")
    elif isinstance(data, str) and PLACEHOLDER.search(data):
        found.append(ConfigProblem(path, "still holds the example's placeholder CHANGE_ME: replace it with the real value",
                                   redact(data, path.rsplit(".", 1)[-1]), True))
    return found


def printable(settings: Settings) -> dict[str, Any]:
    """The effective configuration with every secret masked."""
    return redact(settings.model_dump(mode="json"))
