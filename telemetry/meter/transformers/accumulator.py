"""``accumulator``: hold samples until ``size`` of them are there, then let them all through.

Used in front of publishers that prefer batches. Held samples are part of the
persisted state, so a restart does not lose them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from telemetry.meter.transformers.base import Params, Transformer
from telemetry.models import Sample


class AccumulatorParams(Params):
    size: int = Field(1, description="Samples to hold before flushing them together")


class Accumulator(Transformer):
    name = "accumulator"
    params_model = AccumulatorParams

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        super().__init__(params, tag)
        self.size: int = self.params.size  # type: ignore[attr-defined]
        self.held: list[Sample] = []

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        if self.size < 1:
            return s
        self.held.append(s)
        return None

    def flush(self, now: datetime) -> list[Sample]:
        if self.held and len(self.held) >= self.size:
            out, self.held = self.held, []
            return out
        return []

    def get_state(self) -> dict[str, Any]:
        return {"held": [s.to_dict() for s in self.held]}

    def set_state(self, state: dict[str, Any]) -> None:
        self.held = [Sample.model_validate(d) for d in state.get("held", [])]
