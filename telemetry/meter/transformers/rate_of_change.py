"""``rate_of_change``: a cumulative counter into a rate (cumulative ``cpu`` ns into ``cpu_util`` %).

As Ceilometer: the first sample of a series only primes the cache; later ones
give ``(volume - previous) / seconds``, scaled by ``target.scale`` (a number
or a safe expression such as ``100.0 / (10**9 * (resource_metadata.cpu_number or 1))``)
and capped at ``target.max``. When a cumulative counter goes down, the counter
was reset (a VM or host rebooted), so the new volume itself is the lower bound
of the growth since the reset. Out-of-order samples are dropped. The cache is
the state persisted across restarts, so the first sample after a restart
still yields a rate.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from telemetry.meter.transformers.expr import Expression
from telemetry.meter.transformers.unit_conversion import UnitConversion
from telemetry.models import CounterType, Sample
from telemetry.timeutil import parse_timestamp

log = logging.getLogger(__name__)


class RateOfChange(UnitConversion):
    name = "rate_of_change"

    def __init__(self, params: dict[str, Any] | None, tag: str) -> None:
        super().__init__(params, tag)
        if self.scale_expr is None and self.scale_factor is None:
            # Ceilometer's default scale is the string '1': evaluated, not a factor of the volume.
            self.scale_expr = Expression("1")
        #: (name, resource) -> (volume, timestamp, monotonic_time)
        self.cache: dict[str, tuple[float, datetime, float | None]] = {}

    def handle_sample(self, s: Sample, now: datetime) -> Sample | None:
        key = f"{s.counter_name}\x1f{s.resource_id}"
        mono = (s.model_extra or {}).get("monotonic_time")
        mono = float(mono) if isinstance(mono, (int, float)) and not isinstance(mono, bool) else None
        prev = self.cache.get(key)
        if prev is None:
            self.cache[key] = (s.counter_volume, s.timestamp, mono)
            log.debug("rate_of_change: first sample of %s/%s primes the cache", s.counter_name, s.resource_id)
            return None
        prev_volume, prev_ts, prev_mono = prev
        wall = (s.timestamp - prev_ts).total_seconds()
        # The polling agent's monotonic clock is more precise, but it restarts
        # with the agent; use it only when it agrees on the direction of time.
        delta_t = mono - prev_mono if mono is not None and prev_mono is not None and mono > prev_mono and wall >= 0 else wall
        if delta_t < 0:
            log.warning("rate_of_change: dropping out-of-order sample %s/%s at %s",
                        s.counter_name, s.resource_id, s.timestamp.isoformat())
            return None
        self.cache[key] = (s.counter_volume, s.timestamp, mono)
        if prev_volume <= s.counter_volume or s.counter_type != CounterType.cumulative:
            growth = s.counter_volume - prev_volume
        else:
            growth = s.counter_volume  # counter reset: it grew at least this much since
        rate = growth / delta_t if delta_t else 0.0
        return self.convert(s, rate)

    def get_state(self) -> dict[str, Any]:
        return {"cache": {k: [v, ts.isoformat(), m] for k, (v, ts, m) in self.cache.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.cache = {k: (float(v), parse_timestamp(ts), m) for k, (v, ts, m) in state.get("cache", {}).items()}
