"""Aodh v2 API over the rule engine, so the ``aodh`` CLI and Heat work unchanged.

Paths and JSON follow Aodh (``aodh/api/controllers/v2/alarms.py``): the
alarm body carries its rule under ``<type>_rule``; history entries are
``AlarmChange`` objects with a JSON ``detail``; ``PUT .../state`` takes and
returns a bare JSON string. Caller identity comes from ``X-User-Id`` /
``X-Project-Id``, as Aodh's noauth mode sends them. With ``api.tokens`` set,
reads need a token and changes a ``write`` one (telemetry/api/auth.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from telemetry.actions.security import redact_actions, restore_redacted
from telemetry.api.principal import principal, project_scope
from telemetry.api.query import SimpleTerm, Terms
from telemetry.api.schemas import json_body
from telemetry.api.services import rules_service, runtime_of
from telemetry.meter.query import SampleQuery
from telemetry.bounds import TooComplex, check_shape
from telemetry.errors import describe
from telemetry.gnocchi.models import GnocchiError
from telemetry.rules.models import ACTION_FIELDS, STATES, Alarm
from telemetry.rules.service import RulesService
from telemetry.rules.terms import compile_terms

log = logging.getLogger(__name__)
router = APIRouter(tags=["aodh"])
#: Most alarms or history entries one read returns.
MAX_LIMIT = 10_000
FILTERABLE = ("alarm_id", "name", "type", "state", "severity", "enabled", "project_id", "user_id", "origin")


def _rules(request: Request) -> RulesService:
    return rules_service(request)


def _alarm(request: Request, rules: RulesService, alarm_id: str) -> Alarm:
    """The alarm, or 404, also for another project's alarm when the caller is scoped to one (as Aodh)."""
    alarm = rules.alarm(alarm_id)
    project = project_scope(request)
    if alarm is None or (project is not None and alarm.project_id != project):
        raise HTTPException(404, f"Alarm {alarm_id} not found")
    return alarm


def _check_body(body: dict[str, Any]) -> None:
    """400 naming the field for what no store takes (NaN, 26-digit integers, lone surrogates) or nests too deep."""
    try:
        check_shape(body)
    except TooComplex as exc:
        raise HTTPException(400, f"alarm: {exc}") from None


def _bad(exc: ValidationError | ValueError) -> HTTPException:
    return HTTPException(400, describe(exc, root="alarm") if isinstance(exc, ValidationError) else str(exc))


def _query_filter(terms: list[SimpleTerm]) -> Callable[[Alarm], bool]:
    """The alarms matching the request's q.field/q.op/q.value terms (eq and ne on definition fields)."""
    for t in terms:
        if t.field not in FILTERABLE:
            raise HTTPException(400, f"unknown alarm field {t.field!r} in query (known: {', '.join(FILTERABLE)})")
        if t.op not in ("eq", "ne"):
            raise HTTPException(400, f"operator {t.op!r} is not supported on alarms (use eq or ne)")
    return compile_terms(terms, lambda a, field: getattr(a, field, None))


@router.get("/v2/alarms")
def list_alarms(request: Request, terms: Terms, limit: int | None = Query(None, ge=1, le=MAX_LIMIT),
                marker: str | None = None, sort: list[str] | None = Query(None)) -> list[dict[str, Any]]:
    rules = _rules(request)
    wanted = _query_filter(terms)
    project = project_scope(request)
    alarms = [a for a in rules.alarms() if wanted(a) and (project is None or a.project_id == project)]
    for spec in reversed(sort or ["timestamp:desc"]):
        key, _, direction = spec.partition(":")
        if key not in Alarm.model_fields:
            raise HTTPException(400, f"cannot sort alarms by {key!r}")
        alarms.sort(key=lambda a: str(getattr(a, key)), reverse=direction != "asc")
    if marker:
        ids = [a.alarm_id for a in alarms]
        if marker not in ids:
            raise HTTPException(400, f"marker {marker} not found")
        alarms = alarms[ids.index(marker) + 1:]
    if limit is not None:
        alarms = alarms[:limit]
    return [_shown(a) for a in alarms]


@router.post("/v2/alarms", status_code=201)
async def create_alarm(request: Request, response: Response, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    rules = _rules(request)
    user, project = request.headers.get("x-user-id"), request.headers.get("x-project-id")
    _check_body(body)
    data = {k: v for k, v in body.items() if v is not None and k not in ("alarm_id", "timestamp", "state_timestamp")}
    scope = project_scope(request)
    if scope is not None:  # a Keystone token's own project and user, not what the body or headers claim
        who = principal(request)
        user, project = (who.user_id if who else None), scope
        data.update(user_id=user, project_id=project)
    data.setdefault("user_id", user)
    data.setdefault("project_id", project)
    data["origin"] = "api"
    _resolve_metrics(request, data)
    try:
        alarm = Alarm.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise _bad(exc) from None
    if rules.name_taken(alarm.name, alarm.project_id):
        raise HTTPException(409, f"Alarm with name='{alarm.name}' exists")
    await _refuse_dead_targets(request, alarm)
    warnings = await _warnings(request, alarm)
    await rules.save_alarm(alarm, "creation", _shown(alarm), user, project)
    response.headers["Location"] = str(request.url_for("get_alarm", alarm_id=alarm.alarm_id))
    return _with_warnings(response, alarm, warnings)


BY_METRICS = "gnocchi_aggregation_by_metrics_threshold"


def _resolve_metrics(request: Request, data: dict[str, Any]) -> None:
    """A by-metrics rule names Gnocchi metric ids: the rule engine watches their (meter, resource) series."""
    if data.get("type") != BY_METRICS:
        return
    key = f"{BY_METRICS}_rule" if f"{BY_METRICS}_rule" in data else "rule"
    rule = data.get(key)
    if not isinstance(rule, dict) or not isinstance(rule.get("metrics"), list):
        return  # the model's validation names what is missing
    gnocchi = runtime_of(request).gnocchi
    if gnocchi is None:
        raise HTTPException(400, f"{BY_METRICS} alarms read this server's Gnocchi API, which is not running here")
    try:
        series = gnocchi.metric_series(rule["metrics"])
    except GnocchiError as exc:
        raise HTTPException(400, f"{key}.metrics: {exc}") from None
    data[key] = {**rule, "series": [list(s) for s in series]}


async def _refuse_dead_targets(request: Request, alarm: Alarm) -> None:
    """400 for an action that would never be called, instead of a silent block when the alarm fires."""
    rt = runtime_of(request)
    if rt.actions is None:
        return
    problems = []
    for field in ACTION_FIELDS:
        for i, target in enumerate(getattr(alarm, field)):
            why = await rt.actions.refused_target(target)
            if why:
                problems.append(f"{field}[{i}]: {why}")
    if problems:
        raise HTTPException(400, "; ".join(problems))


def arrival_interval(timestamps_ms: dict[int, list[int]]) -> float | None:
    """Seconds between a series' samples (the median over every series), None without two samples in one."""
    gaps = sorted(b - a for ts in timestamps_ms.values() for a, b in itertools.pairwise(sorted(set(ts))))
    return gaps[len(gaps) // 2] / 1000 if gaps else None


#: How far back the sampling interval is measured, and on how many samples at most.
INTERVAL_WINDOW_MS = 6 * 3600 * 1000
INTERVAL_SAMPLES = 500


async def _warnings(request: Request, alarm: Alarm) -> list[str]:
    """What makes this alarm unable to leave ``insufficient data``, measured on the data already stored."""
    rule, store = alarm.threshold_rule, runtime_of(request).sample_store
    if rule is None or store is None:
        return []
    q = SampleQuery(meter=rule.meter_name)
    q.lo = int(time.time() * 1000) - INTERVAL_WINDOW_MS
    series: dict[int, list[int]] = {}
    for s, row in await store.run(store.samples_sync, q, INTERVAL_SAMPLES):
        series.setdefault(s.id, []).append(row.ts)
    interval = arrival_interval(series)
    if interval is None or rule.period >= interval:
        return []
    text = (f"threshold_rule.period {rule.period}s is shorter than the interval {rule.meter_name} arrives at "
            f"({interval:g}s): most periods hold no sample and the alarm stays 'insufficient data'; "
            f"use a period of at least {math.ceil(interval)}s")
    log.warning("alarm %s: %s", alarm.name, text)
    return [text]


def _with_warnings(response: Response, alarm: Alarm, warnings: list[str]) -> dict[str, Any]:
    """Aodh's body, plus ``warnings`` (shown by the aodh CLI's table) and RFC 7234 ``Warning`` headers."""
    body = _shown(alarm)
    if warnings:
        body["warnings"] = warnings
        response.headers["Warning"] = ", ".join('299 telemetry "' + w.replace('"', "'") + '"' for w in warnings)
    return body


@router.get("/v2/alarms/{alarm_id}", name="get_alarm")
def get_alarm(request: Request, alarm_id: str) -> dict[str, Any]:
    return _shown(_alarm(request, _rules(request), alarm_id))


@router.put("/v2/alarms/{alarm_id}")
async def update_alarm(request: Request, alarm_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    rules = _rules(request)
    old = _alarm(request, rules, alarm_id)
    before = old.to_aodh()
    _check_body(body)
    data = {k: v for k, v in body.items() if v is not None}
    for field in ACTION_FIELDS:  # a client writing back what it read sends the redacted forms
        if isinstance(data.get(field), list) and all(isinstance(t, str) for t in data[field]):
            data[field] = restore_redacted(data[field], getattr(old, field))
    # Edited through the API, it is the API's alarm: a rule file's trust (any target) must not carry over.
    data.update(alarm_id=alarm_id, origin="api")
    data.setdefault("user_id", old.user_id)
    data.setdefault("project_id", old.project_id)
    if project_scope(request) is not None:
        data["project_id"] = old.project_id  # a scoped caller cannot move an alarm to another project
    new_state = data.get("state", old.state)
    data["state_timestamp"] = old.state_timestamp if new_state == old.state else None
    if data["state_timestamp"] is None:
        data.pop("state_timestamp")
    data.pop("timestamp", None)
    if data.get("type") == BY_METRICS and f"{BY_METRICS}_rule" not in data and "rule" not in data:
        data[f"{BY_METRICS}_rule"] = before.get(f"{BY_METRICS}_rule")
    _resolve_metrics(request, data)
    try:
        alarm = Alarm.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise _bad(exc) from None
    if alarm.name != old.name and rules.name_taken(alarm.name, alarm.project_id, other_than=alarm_id):
        raise HTTPException(409, f"Alarm with name={alarm.name} exists")
    await _refuse_dead_targets(request, alarm)
    after = alarm.to_aodh()
    change = {k: v for k, v in after.items() if before.get(k) != v and k not in ("timestamp", "state_timestamp")}
    await rules.save_alarm(alarm, "rule change", redact_actions(change, ACTION_FIELDS), request.headers.get("x-user-id"),
                           request.headers.get("x-project-id"))
    return redact_actions(after, ACTION_FIELDS)


@router.delete("/v2/alarms/{alarm_id}", status_code=204)
async def delete_alarm(request: Request, alarm_id: str) -> Response:
    rules = _rules(request)
    await rules.delete_alarm(_alarm(request, rules, alarm_id), request.headers.get("x-user-id"),
                             request.headers.get("x-project-id"))
    return Response(status_code=204)


@router.get("/v2/alarms/{alarm_id}/state", responses=json_body(Literal["ok", "alarm", "insufficient data"]))
def get_state(request: Request, alarm_id: str) -> JSONResponse:
    return JSONResponse(_alarm(request, _rules(request), alarm_id).state)


@router.put("/v2/alarms/{alarm_id}/state",
            responses=json_body(Literal["ok", "alarm", "insufficient data"]))
async def put_state(request: Request, alarm_id: str) -> JSONResponse:
    rules = _rules(request)
    _alarm(request, rules, alarm_id)
    raw = (await request.body()).decode().strip()
    try:
        state = json.loads(raw) if raw.startswith('"') else raw
    except ValueError:
        state = raw
    if state not in STATES:
        raise HTTPException(400, f"state invalid: {state!r} (expected one of {', '.join(STATES)})")
    await rules.set_state(alarm_id, state)
    return JSONResponse(state)


@router.get("/v2/alarms/{alarm_id}/history")
async def history(request: Request, alarm_id: str, limit: int = Query(1000, ge=1, le=MAX_LIMIT)) -> list[dict[str, Any]]:
    """Kept after deletion, as Aodh keeps it (the history has its own retention).

    A project-scoped caller sees the history of its project's existing alarms only.
    """
    if project_scope(request) is not None:
        _alarm(request, _rules(request), alarm_id)
    changes = await _rules(request).history(alarm_id, limit)
    return [_redacted_change(c.model_dump(mode="json")) for c in changes]


def _shown(alarm: Alarm) -> dict[str, Any]:
    """An alarm as every read returns it: action targets redacted (telemetry/actions/security.py)."""
    return redact_actions(alarm.to_aodh(), ACTION_FIELDS)


def _redacted_change(change: dict[str, Any]) -> dict[str, Any]:
    """A history entry with the targets in its JSON ``detail`` redacted (entries stored before redaction too)."""
    try:
        detail = json.loads(change.get("detail") or "null")
    except ValueError:
        return change
    if isinstance(detail, dict):
        change["detail"] = json.dumps(redact_actions(detail, ACTION_FIELDS))
    return change


@router.get("/v2/capabilities")
def capabilities() -> dict[str, Any]:
    return {"alarm_storage": {"storage:production_ready": True},
            "api": {"alarms:query:simple": True, "alarms:history:query:simple": True}}
