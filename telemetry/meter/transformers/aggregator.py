"""``aggregator``: merge samples of a series until ``size`` or ``retention_time``.

As Ceilometer's AggregatorTransformer: samples are grouped by meter, resource
and those of ``project_id``/``user_id`` that are not given a merge policy;
a gauge comes out as the average, a delta as the sum, a cumulative as the
latest volume. ``resource_metadata``, ``project_id`` and ``user_id`` policies
are ``first`` or ``last`` (``drop`` too for metadata); ``timestamp`` is
``first`` or ``last``. ``target`` converts like ``unit_conversion``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from telemetry.meter.transformers.unit_conversion import ScalingParams, UnitConversion
from telemetry.models import CounterType, Sample
from telemetry.timeutil import parse_timestamp

log = logging.getLogger(__name__)

Policy = Literal["first", "last"]


class AggregatorParams(ScalingParams):
    size: int | None = Field(1, ge=0)
    retention_time: float | None = Field(None, ge=0)
    project_id: Policy | None = None
    user_id: Policy | None = None
    resource_metadata: Literal["first", "last", "drop"] = "last"
    timestamp: Policy = "first"


class Aggregator(UnitConversion):
    name = "aggregator"
    params_model = AggregatorParams

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        super().__init__(params, tag)
        p: AggregatorParams = self.params  # type: ignore[assignment]
        self.p = p
        self.size = p.size or None
        self.retention = p.retention_time or None
        if not (self.size or self.retention):
            self.size = 1
        self.key_attributes = [f for f in ("project_id", "user_id") if getattr(p, f) is None]
        self.merge = {f: getattr(p, f) for f in ("project_id", "user_id") if getattr(p, f) is not None}
        self.merge["resource_metadata"] = p.resource_metadata
        self.samples: dict[str, Sample] = {}
        self.counts: dict[str, int] = {}
        self.initial: datetime | None = None
        self.aggregated = 0

    def _key(self, s: Sample) -> str:
        parts = ["<undefined>" if getattr(s, f) is None else str(getattr(s, f)) for f in self.key_attributes]
        return "\x1f".join([s.counter_name, s.resource_id, *parts])

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        if self.initial is None:
            self.initial = s.timestamp
        self.aggregated += 1
        key = self._key(s)
        self.counts[key] = self.counts.get(key, 0) + 1
        held = self.samples.get(key)
        if held is None:
            first = self.convert(s)
            if self.merge["resource_metadata"] == "drop":
                first = first.model_copy(update={"resource_metadata": {}})
            self.samples[key] = first
            return None
        update: dict[str, Any] = {}
        if self.p.timestamp == "last":
            update["timestamp"] = s.timestamp
        scaled = self.scaled(s)
        update["counter_volume"] = scaled if s.counter_type == CounterType.cumulative else held.counter_volume + scaled
        for field, policy in self.merge.items():
            if policy == "last":
                update[field] = getattr(s, field)
        self.samples[key] = held.model_copy(update=update)
        return None

    def flush(self, now: datetime) -> list[Sample]:
        if self.initial is None:
            return []
        expired = self.retention is not None and (now - self.initial).total_seconds() > self.retention
        full = self.size is not None and self.aggregated >= self.size
        if not (full or expired):
            return []
        out = []
        for key, s in self.samples.items():
            if s.counter_type == CounterType.gauge:
                s = s.model_copy(update={"counter_volume": s.counter_volume / self.counts[key]})
            out.append(s)
        self.samples.clear()
        self.counts.clear()
        self.aggregated = 0
        self.initial = None
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "samples": {k: s.to_dict() for k, s in self.samples.items()},
            "counts": self.counts,
            "initial": self.initial.isoformat() if self.initial else None,
            "aggregated": self.aggregated,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.samples = {k: Sample.model_validate(d) for k, d in state.get("samples", {}).items()}
        self.counts = {k: int(v) for k, v in state.get("counts", {}).items()}
        self.initial = parse_timestamp(state["initial"]) if state.get("initial") else None
        self.aggregated = int(state.get("aggregated", 0))
