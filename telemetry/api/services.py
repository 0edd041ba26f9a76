"""The domain facades a route needs, or the 503 that says which part of the daemon is not running."""

from __future__ import annotations

from fastapi import HTTPException, Request

from telemetry.actions.service import ActionsService
from telemetry.events.store import EventStore
from telemetry.meter.store.base import SampleStore
from telemetry.rules.service import RulesService
from telemetry.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def rules_service(request: Request) -> RulesService:
    found = runtime_of(request).rules
    if found is None:
        raise HTTPException(503, "the rule engine is not running (rules.enabled is false, or this is an agent)")
    return found


def actions_service(request: Request) -> ActionsService:
    found = runtime_of(request).actions
    if found is None:
        raise HTTPException(503, "the actions stage is not running")
    return found


def event_store(request: Request) -> EventStore:
    found = runtime_of(request).event_store
    if found is None:
        raise HTTPException(503, "the event store is not running on this daemon")
    return found


def sample_store(request: Request) -> SampleStore:
    found = runtime_of(request).sample_store
    if found is None:
        raise HTTPException(503, "the sample store is not running")
    return found
