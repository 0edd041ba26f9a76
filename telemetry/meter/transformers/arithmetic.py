"""``arithmetic``: a new meter computed from several meters of one resource.

``target.expr`` names meters as ``$(meter.name)`` (their volume) or
``$(meter.name).resource_metadata.field``, e.g. ``100 * $(memory.usage) / $(memory)``.
As in Ceilometer, the latest sample of each named meter is cached per
resource and, once all are there, the expression gives one sample (named
``target.name``, stamped with the newest timestamp) and the cache of that
resource empties. The expression runs in the safe evaluator, never ``eval``.
"""

from __future__ import annotations

import keyword
import logging
import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from telemetry.meter.transformers.base import (
    Params,
    Transformer,
    TransformError,
    compile_expression,
    derive,
    evaluate,
    sample_names,
)
from telemetry.meter.transformers.expr import Expression
from telemetry.models import CounterType, Sample, derived_id
from telemetry.timeutil import parse_timestamp

log = logging.getLogger(__name__)

METER_REF = re.compile(r"\$\(([\w.\-]+)\)")


def escape(name: str) -> str:
    """A meter name as a Python identifier (Ceilometer's escaping: ``a.b`` -> ``_a_b_ESC``)."""
    has_dot = "." in name or "-" in name
    if has_dot:
        name = name.replace(".", "_").replace("-", "_")
    if has_dot or name.endswith("ESC") or keyword.iskeyword(name):
        name = f"_{name}_ESC"
    return name


def parse_expr(expr: str) -> tuple[str, dict[str, str]]:
    """``$(a.b) / 2`` -> (``_a_b_ESC.volume / 2``, {meter: escaped name})."""
    names: dict[str, str] = {}

    def replace(m: re.Match[str]) -> str:
        meter = m.group(1)
        esc = names.setdefault(meter, escape(meter))
        followed_by_attr = m.end(0) < len(expr) and expr[m.end(0)] == "."
        return esc if followed_by_attr else esc + ".volume"

    return METER_REF.sub(replace, expr), names


class ArithmeticTarget(Params):
    name: str | None = None
    unit: str | None = None
    type: Literal["gauge", "delta", "cumulative"] | None = None
    expr: str = Field(description="Expression over $(meter) references")

    @field_validator("expr")
    @classmethod
    def _expr(cls, v: str) -> str:
        escaped, names = parse_expr(v)
        if not names:
            raise ValueError(f"arithmetic expression {v!r} must name at least one meter as $(name)")
        Expression(escaped)  # fail at load; pydantic names the field
        return v


class ArithmeticParams(Params):
    target: ArithmeticTarget


class Arithmetic(Transformer):
    name = "arithmetic"
    params_model = ArithmeticParams

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        super().__init__(params, tag)
        self.target: ArithmeticTarget = self.params.target  # type: ignore[attr-defined]
        escaped, self.escaped_names = parse_expr(self.target.expr)
        self.expr = compile_expression(escaped, "target.expr")
        self.reference = next(iter(self.escaped_names))
        self.cache: dict[str, dict[str, Sample]] = {}
        self.latest: datetime | None = None

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        if s.counter_name in self.escaped_names:
            self.cache.setdefault(s.resource_id, {})[s.counter_name] = s
        self.latest = s.timestamp if self.latest is None else max(self.latest, s.timestamp)
        return None

    def flush(self, now: datetime) -> list[Sample]:
        out = []
        for rid in list(self.cache):
            got = self.cache[rid]
            if len(got) < len(self.escaped_names):
                continue
            del self.cache[rid]
            try:
                out.append(self._calculate(got))
            except TransformError as exc:
                log.warning("arithmetic: cannot evaluate %s for %s: %s", self.target.expr, rid, exc)
        return out

    def _calculate(self, got: dict[str, Sample]) -> Sample:
        names = {self.escaped_names[m]: sample_names(s) for m, s in got.items()}
        volume = evaluate(self.expr, names)  # type: ignore[arg-type]
        if math.isnan(volume):
            raise TransformError("the expression evaluated to NaN")
        ref = got[self.reference]
        ids = sorted(s.message_id for s in got.values())
        return derive(
            ref,
            self.tag,
            message_id=derived_id("transformed", self.tag, *ids),
            counter_name=self.target.name or ref.counter_name,
            counter_unit=self.target.unit if self.target.unit is not None else ref.counter_unit,
            counter_type=CounterType(self.target.type) if self.target.type else ref.counter_type,
            counter_volume=volume,
            timestamp=max(s.timestamp for s in got.values()),
        )

    def get_state(self) -> dict[str, Any]:
        return {"cache": {rid: {m: s.to_dict() for m, s in got.items()} for rid, got in self.cache.items()},
                "latest": self.latest.isoformat() if self.latest else None}

    def set_state(self, state: dict[str, Any]) -> None:
        self.cache = {rid: {m: Sample.model_validate(d) for m, d in got.items()}
                      for rid, got in state.get("cache", {}).items()}
        self.latest = parse_timestamp(state["latest"]) if state.get("latest") else None
