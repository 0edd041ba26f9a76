"""Item values as Ceilometer samples: the meter is the item key, the resource the host.

``resource_metadata`` carries ``host`` and, when known, ``role``: the server
binds a role's template (its triggers) to each host from that field, which is
what makes a template work the same in a split deployment as in the
all-in-one. Kernel counters (interface bytes, context switches) are
``cumulative``, so the ``rate_of_change`` transformer turns them into rates as
Zabbix's "change per second" preprocessing would.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from telemetry.collect.checks.keys import ItemKey, KeyError_, parse_key
from telemetry.models import CounterType, Sample

__all__ = ["item_sample", "numeric"]

_CUMULATIVE = frozenset({"net.if.in", "net.if.out", "system.cpu.switches", "system.cpu.intr"})
_PERCENT_MODES = frozenset({"pused", "pfree", "pavailable"})
_BYTES = frozenset({"vm.memory.size", "vfs.fs.size", "vfs.file.size"})


def _unit(k: ItemKey | None) -> str:
    if k is None:
        return ""
    if k.name == "system.cpu.util":
        return "%"
    mode = k.params[-1] if k.params and isinstance(k.params[-1], str) else ""
    if mode in _PERCENT_MODES:
        return "%"
    if k.name in _BYTES and mode not in ("lines",):
        return "B"
    if k.name in ("net.if.in", "net.if.out") and mode in ("", "bytes"):
        return "B"
    if k.name in ("system.uptime",):
        return "s"
    return ""


def numeric(value: Any) -> float | None:
    """The value as a number, or None for text (a checksum digest, a discovery document)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def item_sample(host: str, key: str, volume: float, when: datetime, source: str,
                role: str | list[str] | None = None, unit: str | None = None, **meta: Any) -> Sample:
    try:
        parsed: ItemKey | None = parse_key(key)
    except KeyError_:
        parsed = None
    metadata: dict[str, Any] = {"host": host, **meta}
    if role:
        metadata["role"] = role
    ctype = CounterType.cumulative if parsed is not None and parsed.name in _CUMULATIVE else CounterType.gauge
    return Sample(counter_name=key, counter_type=ctype, counter_unit=_unit(parsed) if unit is None else unit,
                  counter_volume=volume, resource_id=host, source=source, timestamp=when,
                  resource_metadata=metadata)
