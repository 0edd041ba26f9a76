"""The domain facades a route needs, or the 503 that says which part of the daemon is not running."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from telemetry.actions.service import ActionsService
from telemetry.deadletters.service import DeadLetterService
from telemetry.events.backend import EventBackend
from telemetry.meter.store.base import SampleStore
from telemetry.rules.service import RulesService
from telemetry.runtime import Runtime

#: Runtime field -> what the 503 says when this daemon does not run it.
_MISSING = {
    "rules": "the rule engine is not running (rules.enabled is false, or this is an agent)",
    "actions": "the actions stage is not running (actions.enabled is false, or this is an agent)",
    "event_store": "the event store is not running on this daemon",
    "sample_store": "the sample store is not running on this daemon",
    "dead_letters": "dead letters are kept by servers; this daemon runs none",
}


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _service(request: Request, name: str) -> Any:
    found = getattr(runtime_of(request), name)
    if found is None:
        raise HTTPException(503, _MISSING[name])
    return found


def rules_service(request: Request) -> RulesService:
    svc: RulesService = _service(request, "rules")
    return svc


def actions_service(request: Request) -> ActionsService:
    svc: ActionsService = _service(request, "actions")
    return svc


def event_store(request: Request) -> EventBackend:
    store: EventBackend = _service(request, "event_store")
    return store


def sample_store(request: Request) -> SampleStore:
    store: SampleStore = _service(request, "sample_store")
    return store


def dead_letter_service(request: Request) -> DeadLetterService:
    svc: DeadLetterService = _service(request, "dead_letters")
    return svc
