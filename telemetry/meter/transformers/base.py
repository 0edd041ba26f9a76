"""What every transformer shares: parameters, the sample namespace, state.

Transformers follow Ceilometer's contract (``handle_sample`` then ``flush``),
with one addition: their state is plain JSON (``get_state``/``set_state``) so
the pipeline can persist it after the store's durable write and a restart
continues the rates where it stopped.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from telemetry.meter.transformers.expr import Expression, TransformExpressionError
from telemetry.models import Sample, derived_id

__all__ = ["Params", "Transformer", "TransformError", "sample_names", "derive"]


class TransformError(ValueError):
    """One sample could not be transformed (its expression failed); the others go on."""


class Params(BaseModel):
    """Base of each transformer's ``parameters``: unknown keys are config errors."""

    model_config = ConfigDict(extra="forbid")


def sample_names(s: Sample) -> dict[str, Any]:
    """The namespace an expression sees: Ceilometer's ``Sample.as_dict()`` names and ours."""
    extra = s.model_extra or {}
    return {
        "name": s.counter_name,
        "type": s.counter_type.value,
        "unit": s.counter_unit,
        "volume": s.counter_volume,
        "counter_name": s.counter_name,
        "counter_type": s.counter_type.value,
        "counter_unit": s.counter_unit,
        "counter_volume": s.counter_volume,
        "user_id": s.user_id,
        "project_id": s.project_id,
        "resource_id": s.resource_id,
        "source": s.source,
        "timestamp": s.timestamp.isoformat(),
        "resource_metadata": s.resource_metadata,
        "id": s.message_id,
        "message_id": s.message_id,
        "monotonic_time": extra.get("monotonic_time"),
        "user_name": extra.get("user_name"),
        "project_name": extra.get("project_name"),
    }


def derive(origin: Sample, tag: str, **changes: Any) -> Sample:
    """A new sample from ``origin`` with a deterministic id.

    The id derives from the origin's id and the transformer that made it, so a
    redelivered input re-creates the same derived sample and the store dedups it.
    """
    changes.setdefault("message_id", derived_id("transformed", tag, origin.message_id))
    changes.setdefault("message_signature", None)
    return origin.model_copy(update=changes)


class Transformer:
    """Base class; ``name`` is the key used in ``pipeline.yaml``."""

    name: ClassVar[str] = ""
    params_model: ClassVar[type[Params]] = Params

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        self.params = self.params_model.model_validate(params or {})
        #: Unique per sink and position, mixed into derived message ids.
        self.tag = tag

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        """Transform one sample; None holds or drops it."""
        return s

    def flush(self, now: datetime) -> list[Sample]:
        """Samples held back until now (accumulator, aggregator, arithmetic)."""
        return []

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned; called once, before any sample."""


def compile_expression(value: str | None, what: str) -> Expression | None:
    if value is None:
        return None
    try:
        return Expression(value)
    except TransformExpressionError as exc:
        raise ValueError(f"{what}: {exc}") from None


def evaluate(expr: Expression, names: dict[str, Any]) -> float:
    try:
        value = expr.evaluate(names)
    except TransformExpressionError as exc:
        raise TransformError(str(exc)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TransformError(f"{expr.source!r} gave {value!r}, not a number")
    return float(value)


def regex_map(pattern: str | None, replacement: str | None, value: str) -> str | None:
    """Ceilometer's ``map_from``/``map_to`` rename: ``re.sub`` when both are given."""
    if not pattern or replacement is None:
        return None
    try:
        mapped = re.sub(pattern, replacement, value)
    except re.error:
        return None
    return mapped or None
