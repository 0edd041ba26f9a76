"""``unit_conversion``: rename, rescale and retype samples (Ceilometer's ScalingTransformer).

``target.scale`` is a number (a factor) or an expression over the sample,
e.g. ``volume * 8`` for bytes to bits; ``target.max`` caps the result;
``source.map_from``/``target.map_to`` rename with regular expressions. Only
samples whose unit equals ``source.unit`` (when given) are converted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from telemetry.meter.transformers.base import (
    Params,
    Transformer,
    compile_expression,
    derive,
    evaluate,
    regex_map,
    sample_names,
)
from telemetry.meter.transformers.expr import Expression
from telemetry.models import CounterType, Sample


class NameUnitMap(Params):
    name: str | None = None
    unit: str | None = None


class SourceSpec(Params):
    unit: str | None = None
    map_from: NameUnitMap | None = None


class TargetSpec(Params):
    name: str | None = None
    unit: str | None = None
    type: Literal["gauge", "delta", "cumulative"] | None = None
    scale: float | str | None = None
    max: float | None = None
    map_to: NameUnitMap | None = None

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: Any) -> Any:
        if isinstance(v, str):
            Expression(v)  # fail at load; pydantic names the field
        return v


class ScalingParams(Params):
    source: SourceSpec = Field(default_factory=SourceSpec)
    target: TargetSpec = Field(default_factory=TargetSpec)


class UnitConversion(Transformer):
    name = "unit_conversion"
    params_model = ScalingParams

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        super().__init__(params, tag)
        p: ScalingParams = self.params  # type: ignore[assignment]
        self.source, self.target = p.source, p.target
        scale = self.target.scale
        self.scale_expr: Expression | None = compile_expression(scale, "target.scale") if isinstance(scale, str) else None
        self.scale_factor: float | None = float(scale) if isinstance(scale, (int, float)) else None

    def _map(self, s: Sample, attr: Literal["name", "unit"]) -> str:
        current = s.counter_name if attr == "name" else s.counter_unit
        frm, to = self.source.map_from, self.target.map_to
        if frm is not None and to is not None:
            mapped = regex_map(getattr(frm, attr), getattr(to, attr), current)
            if mapped:
                return mapped
        fixed = getattr(self.target, attr)
        return fixed if fixed is not None else current

    def scaled(self, s: Sample) -> float:
        if self.scale_expr is not None:
            return evaluate(self.scale_expr, sample_names(s))
        if self.scale_factor is not None:
            return s.counter_volume * self.scale_factor
        return s.counter_volume

    def convert(self, s: Sample, growth: float = 1.0) -> Sample:
        volume = self.scaled(s) * growth
        if self.target.max is not None:
            volume = min(volume, self.target.max)
        return derive(
            s,
            self.tag,
            counter_name=self._map(s, "name"),
            counter_unit=self._map(s, "unit"),
            counter_type=CounterType(self.target.type) if self.target.type else s.counter_type,
            counter_volume=volume,
        )

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        if self.source.unit is None or self.source.unit == s.counter_unit:
            return self.convert(s)
        return s
