"""Generate docs/configuration.md from the pydantic models.

The reference is generated, never hand-written, so it cannot drift from the
code; a test fails when the committed file differs from this output
(regenerate with ``make docs``).
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from telemetry.config.model import Settings

HEADER = """# Configuration reference

Generated from the pydantic models in `telemetry/config/` by `make docs`; do not edit by hand.

The daemon reads one YAML file (`-c FILE`, or `$TELEMETRY_CONFIG`). Every key is optional
unless marked *required*; unknown keys are errors. `telemetry check-config FILE` validates a
file and names each bad field with its path. A section written in the file is on unless it says
`enabled: false`; a section left out keeps the defaults below, where `sources.notifications`,
`sources.syslog` and `bus.tls` are off (they reach a broker or open a port). Any setting can be overridden by an environment
variable: `TELEMETRY_` + the path in capitals with `__` between levels, the value read as YAML,
for example `TELEMETRY_API__PORT=9000` or `TELEMETRY_BUS__URL=amqp://guest:guest@127.0.0.1:5672/`.
`TELEMETRY_CONFIG` names the file, and the query commands' `TELEMETRY_URL` and `TELEMETRY_TOKEN`
are never read as settings; an error in a variable's value names the variable.
Durations take `30`, `30s`, `5m`, `1h`, `7d`. Secrets (tokens, passwords, `telemetry_secret`)
are masked in `--print-config` and never logged.
"""


def _models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(tp):
        out.extend(_models(arg))
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _default(field: Any) -> str:
    if field.is_required():
        return "*required*"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"({len(value)} entries, see below)"
        if field.default_factory.__name__ in ("gethostname", "default_data_dir"):
            return f"(computed: {field.default_factory.__name__})"
        return f"`{value!r}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{field.default!r}`"


def _section(model: type[BaseModel], path: str, out: list[str], seen: set[str],
             ancestors: tuple[type[BaseModel], ...] = ()) -> None:
    if path in seen or model in ancestors:  # a recursive model (a step's then/else) is described once
        return
    seen.add(path)
    out.append(f"\n## `{path or '(top level)'}`\n")
    doc = (model.__doc__ or "").strip().splitlines()
    if doc:
        out.append(doc[0] + "\n")
    out.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        desc = (field.description or "").replace("|", "\\|")
        type_name = _type_name(field.annotation).replace("|", "\\|")
        out.append(f"| `{key}` | {type_name} | {_default(field)} | {desc} |")
        sub_path = f"{path}.{key}" if path else key
        if typing.get_origin(field.annotation) is list:
            sub_path += "[]"
        nested.extend((sub_path, sub) for sub in _models(field.annotation))
    for sub_path, sub in nested:
        _section(sub, sub_path, out, seen, (*ancestors, model))


def generate() -> str:
    out = [HEADER]
    _section(Settings, "", out, set())
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate())
