"""HTTP API: Ceilometer v2, Aodh v2, events, /metrics and /healthz."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.component import Component


def api_components(runtime: Any) -> Iterable[Component]:
    if not runtime.settings.api.enabled:
        return []
    from telemetry.api.app import ApiComponent

    return [ApiComponent(runtime)]
