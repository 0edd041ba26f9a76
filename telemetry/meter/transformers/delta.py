"""``delta``: the change of a cumulative counter between two samples (Ceilometer's DeltaTransformer).

Ceilometer's default pipeline makes ``cpu.delta`` this way; ``growth_only``
drops negative deltas (counter resets).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import Field

from telemetry.meter.transformers.base import Params, Transformer, derive, regex_map
from telemetry.meter.transformers.unit_conversion import SourceSpec, TargetSpec
from telemetry.models import CounterType, Sample
from telemetry.timeutil import parse_timestamp

log = logging.getLogger(__name__)


class DeltaParams(Params):
    source: SourceSpec = Field(default_factory=SourceSpec)
    target: TargetSpec = Field(default_factory=TargetSpec)
    growth_only: bool = False


class Delta(Transformer):
    name = "delta"
    params_model = DeltaParams

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        super().__init__(params, tag)
        self.cache: dict[str, tuple[float, datetime]] = {}

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        p: DeltaParams = self.params  # type: ignore[assignment]
        key = f"{s.counter_name}\x1f{s.resource_id}"
        prev = self.cache.get(key)
        if prev is None:
            self.cache[key] = (s.counter_volume, s.timestamp)
            return None
        if s.timestamp < prev[1]:
            log.warning("delta: dropping out-of-order sample %s/%s", s.counter_name, s.resource_id)
            return None
        self.cache[key] = (s.counter_volume, s.timestamp)
        change = s.counter_volume - prev[0]
        if p.growth_only and change < 0:
            return None
        frm, to = p.source.map_from, p.target.map_to
        name = (regex_map(frm.name, to.name, s.counter_name) if frm and to else None) or p.target.name or s.counter_name
        return derive(s, self.tag, counter_name=name, counter_type=CounterType.delta, counter_volume=change)

    def get_state(self) -> dict[str, Any]:
        return {"cache": {k: [v, ts.isoformat()] for k, (v, ts) in self.cache.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.cache = {k: (float(v), parse_timestamp(ts)) for k, (v, ts) in state.get("cache", {}).items()}
