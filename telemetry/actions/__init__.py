"""Alarm actions: webhooks, chat, pager, mail and Heat signals, delivered through a durable outbox."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telemetry.component import Component


def action_components(runtime: Any) -> Iterable[Component]:
    if not runtime.settings.actions.enabled:
        return []
    from telemetry.actions.dispatch import ActionDispatcher
    from telemetry.api.actions import router

    runtime.routers.append(router)
    return [ActionDispatcher(runtime)]
