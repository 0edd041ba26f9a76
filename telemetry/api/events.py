"""``/v1/events``: search stored events and notifications, a histogram, and an ingestion door.

``GET /v1/events`` keeps its contract, a JSON list newest first; the per-bucket
counts live at ``/v1/events/histogram`` (and ``GET /v1/events?interval=1m``
answers with that histogram object instead of the list, for Kibana-like
clients that ask both from one path). Handlers are plain functions, so
FastAPI runs the blocking store reads in its thread pool, off the event loop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from telemetry.api import schemas
from telemetry.api.principal import project_scope
from telemetry.api.services import event_store
from telemetry.bounds import TooComplex, check_shape
from telemetry.errors import problems
from telemetry.bus.records import publish_records
from telemetry.events.query import QueryError
from telemetry.events.backend import EventBackend, Histogram
from telemetry.events.times import parse_time_bound
from telemetry.events.trace import trace_query
from telemetry.models import Event, Notification, Record
from telemetry.timeutil import parse_duration

router = APIRouter(tags=["events"])
MAX_LIMIT = 10_000
MAX_INGEST = 10_000

QParam = Annotated[str | None, Query(description="Lucene/Kibana-style query, e.g. component:nova AND level:ERROR")]
TimeParam = Annotated[str | None, Query(description="ISO 8601, epoch seconds, now, or relative such as -1h")]


def _store(request: Request) -> EventBackend:
    return event_store(request)


def _time(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_time_bound(value)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"{name}: {exc}") from None


def _interval(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"interval: {exc}") from None
    if seconds <= 0:
        raise HTTPException(status_code=400, detail="interval: must be positive")
    return seconds


def _histogram_body(h: Histogram, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    return {
        "interval": h.interval,
        "start": start.isoformat() if start else (h.buckets[0][0].isoformat() if h.buckets else None),
        "end": end.isoformat() if end else None,
        "total": h.total,
        "buckets": [{"start": b.isoformat().replace("+00:00", "Z"), "count": n} for b, n in h.buckets],
    }


def _histogram(store: EventBackend, q: str | None, start: str | None, end: str | None, interval: str) -> JSONResponse:
    t0, t1 = _time("start", start), _time("end", end)
    try:
        h = store.histogram(q, _interval(interval), t0, t1)
    except QueryError as exc:
        raise HTTPException(status_code=400, detail=f"q: {exc}") from None
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    return JSONResponse(_histogram_body(h, t0, t1))


@router.get("/v1/events", summary="Search events, newest first", responses=schemas.json_body(list[schemas.Event]))
def list_events(
    request: Request,
    q: QParam = None,
    start: TimeParam = None,
    end: TimeParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    order: Annotated[Literal["desc", "asc"], Query(description="desc: newest first (default)")] = "desc",
    interval: Annotated[str | None, Query(description="Answer with the histogram object instead (e.g. 1m)")] = None,
) -> Any:
    store = _store(request)
    q = _scoped(request, q)
    if interval is not None:
        return _histogram(store, q, start, end, interval)
    t0, t1 = _time("start", start), _time("end", end)
    try:
        rows = store.search(q, t0, t1, limit=limit, newest_first=order == "desc")
    except QueryError as exc:
        raise HTTPException(status_code=400, detail=f"q: {exc}") from None
    return JSONResponse(content=rows)


@router.get("/v1/events/histogram", summary="Count of matching events per time bucket",
            responses=schemas.json_body(schemas.Histogram))
def events_histogram(
    request: Request,
    q: QParam = None,
    start: TimeParam = None,
    end: TimeParam = None,
    interval: Annotated[str, Query(description="Bucket width: 30s, 1m, 1h, ...")] = "1m",
) -> Any:
    return _histogram(_store(request), _scoped(request, q), start, end, interval)


def _scoped(request: Request, q: str | None) -> str | None:
    """The query limited to the caller's project for a project-scoped Keystone token (as Ceilometer's event API)."""
    project = project_scope(request)
    if project is None:
        return q
    term = 'project_id:"' + project.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{term} AND ({q})" if q and q.strip() else term


TRACE_LIMIT = 5_000


@router.get("/v1/events/trace", summary="Every line and notification naming one request, instance or volume",
            responses=schemas.json_body(schemas.Trace))
def trace(
    request: Request,
    request_id: Annotated[str | None, Query(description="req-... (its own or the global request id)")] = None,
    instance: Annotated[str | None, Query(description="An instance id")] = None,
    volume: Annotated[str | None, Query(description="A volume id")] = None,
    start: TimeParam = None,
    end: TimeParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = TRACE_LIMIT,
) -> Any:
    """Oldest first, across services and hosts, with the services in the order the trace reached them.

    The same query as ``telemetry search --request-id/--instance/--volume``.
    """
    # (the query parameter, the kind of resource it names, its value)
    given = [(p, k, v) for p, k, v in (("request_id", "request", request_id), ("instance", "instance", instance),
                                       ("volume", "volume", volume)) if v]
    if len(given) != 1:
        raise HTTPException(status_code=400, detail="give exactly one of request_id, instance, volume")
    param, kind, value = given[0]
    t0, t1 = _time("start", start), _time("end", end)
    try:
        rows = _store(request).search(trace_query(kind, value), t0, t1, limit=limit + 1, newest_first=False)
    except QueryError as exc:  # an id no query can hold (a NUL character)
        raise HTTPException(status_code=400, detail=f"{param}: cannot be searched for ({exc.reason})") from None
    truncated = len(rows) > limit
    rows = rows[:limit]
    services = list(dict.fromkeys(str(e.get("component") or e.get("publisher_id") or "?") for e in rows))
    hosts = list(dict.fromkeys(str(e.get("host") or "?") for e in rows))
    return JSONResponse({"kind": kind, "id": value, "services": services, "hosts": hosts, "truncated": truncated,
                         "events": rows})


def _record(item: Any, index: int) -> Record:
    """An event, a notification, or an oslo.messaging v2 envelope holding one."""
    if not isinstance(item, dict):
        raise HTTPException(status_code=400, detail=f"[{index}]: expected a JSON object")
    try:
        check_shape(item)
    except TooComplex as exc:
        raise HTTPException(status_code=400, detail=f"[{index}]: the record {exc}") from None
    try:
        if "oslo.message" in item:
            item = orjson.loads(item["oslo.message"])
        if "event_type" in item and "message_id" in item:
            return Notification.model_validate(item)
        return Event.model_validate(item)
    except ValidationError as exc:
        path, msg = problems(exc)[0]
        raise HTTPException(status_code=400, detail=f"[{index}]{'.' + path if path else ''}: {msg}") from None
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise HTTPException(status_code=400, detail=f"[{index}]: {exc}") from None


@router.post("/v1/events", status_code=202,
             summary="Publish events or notifications to the bus (for scripts and relays)")
async def post_events(request: Request, body: Annotated[Any, Body()]) -> dict[str, int]:
    """Records go through the bus like any agent's, so they are stored (and deduplicated) by the stage."""
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_INGEST:
        raise HTTPException(status_code=400, detail=f"at most {MAX_INGEST} records per request")
    records = [_record(item, i) for i, item in enumerate(items)]
    await publish_records(request.app.state.runtime.bus, records, durable=True)
    return {"accepted": len(records)}
