"""Rule engine: Aodh-style alarms, event and log alarms, composite alarms, Zabbix-style triggers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.component import Component


def rules_components(runtime: Any) -> Iterable[Component]:
    """The rule stage, and the Aodh v2 and trigger routes (added before the API starts)."""
    if not runtime.settings.rules.enabled:
        return []
    from telemetry.api.aodh import router as aodh_router
    from telemetry.rules.stage import RulesStage
    from telemetry.rules.triggers.api import router as trigger_router

    runtime.routers.extend([aodh_router, trigger_router])
    return [RulesStage(runtime)]
