"""Processing steps after grok: what grok alone cannot do, in Logstash's vocabulary.

The models (and their load-time checks) are in ``telemetry.config.parse``;
here each step is compiled once into a function on the event's data dict,
the dict the parser builds before the Event exists. A step never raises on an
event: text that cannot be converted stays as it was and the event is
tagged, as Logstash does. ``run`` answers False when a ``drop`` step fired.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from telemetry.parse.dates import fast_zone
from telemetry.textformats import Dissector, compile_format
from telemetry.parse.grok import field_path, set_field
from telemetry.parse.jsonline import decode_object

if TYPE_CHECKING:
    from telemetry.config.parse import Condition, DateStep, DissectStep, JsonStep, KvStep, MutateStep, Step

__all__ = ["Steps", "compile_steps", "get_field", "set_value"]

Data = dict[str, Any]
StepFn = Callable[[Data], bool]
_MISSING = object()
_REF = re.compile(r"%\{([^}]+)\}")


def get_field(data: Data, name: str) -> Any:
    node: Any = data
    for part in field_path(name):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def set_value(data: Data, name: str, value: Any) -> None:
    """``name`` (``a`` or ``[a][b]``) set to ``value``, replacing what was there."""
    set_field(data, field_path(name), value, append=False)


def _remove(data: Data, name: str) -> Any:
    path = field_path(name)
    node: Any = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node.pop(path[-1], _MISSING) if isinstance(node, dict) else _MISSING


def sprintf(data: Data, text: str) -> str:
    """``%{field}`` references replaced by the field's value; a missing one stays as written (Logstash)."""
    if "%{" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        v = get_field(data, m.group(1))
        return m.group(0) if v is _MISSING else str(v)
    return _REF.sub(one, text)


def _tag(data: Data, tags: Sequence[str]) -> None:
    for t in tags:
        if t not in data["tags"]:
            data["tags"].append(t)


# -- compilers, one per step kind --------------------------------------------------------------
def _convert(value: Any, to: str) -> Any:
    if isinstance(value, list):
        return [_convert(v, to) for v in value]
    try:
        if to == "integer":
            i = int(float(value)) if not isinstance(value, int) else value
            return i if -(1 << 63) <= i < (1 << 63) else value
        if to == "float":
            f = float(value)
            return f if f - f == 0 else value
        if to == "boolean":
            text = str(value).strip().lower()
            return True if text in ("true", "t", "yes", "y", "1") else False if text in (
                "false", "f", "no", "n", "0") else value
        return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError, OverflowError):
        return value


def _mutate(cfg: MutateStep) -> StepFn:
    gsubs = [(f, re.compile(p), r) for f, p, r in cfg.gsub]

    def run(data: Data) -> bool:
        for old, new in cfg.rename.items():
            v = _remove(data, old)
            if v is not _MISSING:
                set_value(data, new, v)
        for src, dst in cfg.copy_.items():
            v = get_field(data, src)
            if v is not _MISSING:
                set_value(data, dst, v)
        for name, value in cfg.replace.items():
            set_value(data, name, sprintf(data, value))
        for name, to in cfg.convert.items():
            v = get_field(data, name)
            if v is not _MISSING:
                set_value(data, name, _convert(v, to))
        for name, rx, repl in gsubs:
            v = get_field(data, name)
            if isinstance(v, str):
                set_value(data, name, rx.sub(repl, v))
        for names, fn in ((cfg.uppercase, str.upper), (cfg.lowercase, str.lower), (cfg.strip, str.strip)):
            for name in names:
                v = get_field(data, name)
                if isinstance(v, str):
                    set_value(data, name, fn(v))
        for name, sep in cfg.split.items():
            v = get_field(data, name)
            if isinstance(v, str):
                set_value(data, name, v.split(sep))
        for name, value in cfg.add_field.items():
            key, v = sprintf(data, name), sprintf(data, value)
            old = get_field(data, key)
            set_value(data, key, v if old is _MISSING else [*(old if isinstance(old, list) else [old]), v])
        _tag(data, [sprintf(data, t) for t in cfg.add_tag])
        drop = {sprintf(data, t) for t in cfg.remove_tag}
        data["tags"] = [t for t in data["tags"] if t not in drop]
        for name in cfg.remove_field:
            _remove(data, sprintf(data, name))
        return True
    return run


def _kv(cfg: KvStep) -> StepFn:
    fs, vs = re.escape(cfg.field_split), re.escape(cfg.value_split)
    pair = re.compile(rf'([^{fs}{vs}]+)[{vs}](?:"([^"]*)"|\'([^\']*)\'|([^{fs}]*))')
    include, exclude = set(cfg.include_keys), set(cfg.exclude_keys)

    def run(data: Data) -> bool:
        text = get_field(data, cfg.source)
        if not isinstance(text, str):
            return True
        found: dict[str, str] = {}
        for m in pair.finditer(text):
            if len(found) >= cfg.max_keys:
                break
            key = m.group(1).strip()
            if not key or (include and key not in include) or key in exclude:
                continue
            value = next(g for g in m.groups()[1:] if g is not None)
            found[cfg.prefix + key] = value.strip(cfg.trim_value) if cfg.trim_value else value
        if cfg.target:
            set_value(data, cfg.target, found)
        else:
            for k, v in found.items():
                if k not in ("id", "@timestamp", "tags"):
                    data[k] = v
        return True
    return run


def _dissect(cfg: DissectStep) -> StepFn:
    plans = [(src, Dissector(pattern, cfg.append_separator)) for src, pattern in cfg.mapping.items()]

    def run(data: Data) -> bool:
        for src, dissector in plans:
            text = get_field(data, src)
            found = dissector(text) if isinstance(text, str) else None
            if found is None:
                _tag(data, cfg.tag_on_failure)
                continue
            for k, v in found.items():
                if k not in ("id", "@timestamp", "tags"):
                    set_value(data, k, v)
        return True
    return run


def _json(cfg: JsonStep) -> StepFn:
    def run(data: Data) -> bool:
        text = get_field(data, cfg.source)
        obj, tags = decode_object(text) if isinstance(text, str) else (None, [])
        if obj is None:
            _tag(data, cfg.tag_on_failure)
            return True
        _tag(data, tags)
        if cfg.target:
            set_value(data, cfg.target, obj)
        else:
            for k, v in obj.items():
                data[f"{k}_raw" if k in ("id", "@timestamp", "tags") else k] = v
        return True
    return run


def _date(cfg: DateStep, default_tz: tzinfo) -> StepFn:
    source, formats = cfg.match[0], [compile_format(f) for f in cfg.match[1:]]
    tz = fast_zone(ZoneInfo(cfg.timezone)) if cfg.timezone else default_tz

    def run(data: Data) -> bool:
        value = get_field(data, source)
        if value is _MISSING:
            return True
        for parse in formats:
            when = parse(value, tz)
            if when is not None:
                if cfg.target == "@timestamp":
                    data["@timestamp"] = when
                else:
                    set_value(data, cfg.target, when.isoformat().replace("+00:00", "Z"))
                return True
        _tag(data, cfg.tag_on_failure)
        return True
    return run


def _test(cond: Condition) -> Callable[[Data], bool]:
    rx = re.compile(cond.matches) if cond.matches is not None else None
    options = {str(v) for v in cond.in_} if cond.in_ is not None else set()

    def values(v: Any) -> list[Any]:
        return v if isinstance(v, list) else [v]

    def test(data: Data) -> bool:
        v = get_field(data, cond.field)
        if cond.exists is not None:
            ok = (v is not _MISSING and v is not None) == cond.exists
        elif v is _MISSING or v is None:
            ok = False
        elif rx is not None:
            ok = any(rx.search(str(x)) for x in values(v))
        elif cond.in_ is not None:
            ok = any(str(x) in options for x in values(v))
        else:
            ok = any(x == cond.equals or str(x) == str(cond.equals) for x in values(v))
        return ok != cond.negate
    return test


def _if(step: Step, default_tz: tzinfo) -> StepFn:
    assert step.if_ is not None
    test = _test(step.if_)
    then, other = compile_steps(step.then, default_tz), compile_steps(step.else_, default_tz)

    def run(data: Data) -> bool:
        return (then if test(data) else other).run(data)
    return run


def _compile(step: Step, default_tz: tzinfo) -> StepFn:
    if step.drop is not None:
        return lambda data: False
    if step.mutate is not None:
        return _mutate(step.mutate)
    if step.kv is not None:
        return _kv(step.kv)
    if step.dissect is not None:
        return _dissect(step.dissect)
    if step.json_ is not None:
        return _json(step.json_)
    if step.date is not None:
        return _date(step.date, default_tz)
    return _if(step, default_tz)


class Steps:
    """A compiled list of steps; ``run`` changes the data in place and answers False to drop it."""

    def __init__(self, fns: list[StepFn]) -> None:
        self.fns = fns

    def __bool__(self) -> bool:
        return bool(self.fns)

    def run(self, data: Data) -> bool:
        for fn in self.fns:
            if not fn(data):
                return False
        if not isinstance(data.get("tags"), list):
            data["tags"] = []
        return True


def compile_steps(steps: Sequence[Step], default_tz: tzinfo) -> Steps:
    return Steps([_compile(s, default_tz) for s in steps])
