"""Ceilometer's sample transformers, by the names ``pipeline.yaml`` uses."""

from __future__ import annotations

from telemetry.meter.transformers.accumulator import Accumulator
from telemetry.meter.transformers.aggregator import Aggregator
from telemetry.meter.transformers.arithmetic import Arithmetic
from telemetry.meter.transformers.base import Transformer, TransformError
from telemetry.meter.transformers.delta import Delta
from telemetry.meter.transformers.rate_of_change import RateOfChange
from telemetry.meter.transformers.unit_conversion import UnitConversion

TRANSFORMERS: dict[str, type[Transformer]] = {
    t.name: t for t in (RateOfChange, UnitConversion, Arithmetic, Accumulator, Aggregator, Delta)
}

__all__ = ["TRANSFORMERS", "TransformError", "Transformer"]
