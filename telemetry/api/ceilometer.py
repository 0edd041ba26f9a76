"""Ceilometer v2 API: meters, samples, statistics and resources, JSON as Ceilometer returns it.

Simple queries come as parallel ``q.field`` / ``q.op`` / ``q.value`` (and
optional ``q.type``) lists, exactly as python-ceilometerclient sends them.
Samples POSTed to ``/v2/meters/{name}`` go onto the bus like any other input,
so the transformer pipeline sees them and the meter stage stores them (the
store dedups on message_id, so a client retrying its POST counts once).
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, BaseModel, ConfigDict, ValidationError

from telemetry.meter.statistics import Statistics
from telemetry.api.schemas import Meter, NewSample, OldSample, Resource, json_body
from telemetry.api.query import SimpleTerm, Terms
from telemetry.api.principal import principal, project_scope
from telemetry.api.services import sample_store
from telemetry.bounds import TooComplex, check_shape
from telemetry.errors import describe
from telemetry.bus.records import publish_records
from telemetry.meter.query import SampleQueryError, QueryTerm, SampleQuery
from telemetry.meter.statistics import AGGREGATES, ceilometer_time, from_ms
from telemetry.meter.store.base import SampleRow, SampleStore, SeriesRow, stored_message_id
from telemetry.models import Sample
from telemetry.timeutil import utcnow

router = APIRouter(prefix="/v2", tags=["ceilometer"])


class OldSampleIn(BaseModel):
    """A sample as POSTed to ``/v2/meters/{name}`` (Ceilometer's OldSample)."""

    model_config = ConfigDict(extra="ignore")

    counter_name: str | None = None
    counter_type: str
    counter_unit: str = ""
    counter_volume: float = Field(allow_inf_nan=False)
    resource_id: str
    project_id: str | None = None
    user_id: str | None = None
    source: str | None = None
    timestamp: datetime | None = None
    resource_metadata: dict[str, Any] | None = None
    message_id: str | None = None


def _store(request: Request) -> SampleStore:
    return sample_store(request)


def parse_query(request: Request, simple: list[SimpleTerm], meter: str | None = None) -> SampleQuery:
    """``q.field/q.op/q.value/q.type`` into a SampleQuery; a bad term is a 400 naming it.

    A project-scoped Keystone caller's query is limited to its project, whatever it asked for.
    """
    project = project_scope(request)
    terms = [] if project is None else [QueryTerm(field="project_id", value=project)]
    for t in simple:
        try:
            terms.append(QueryTerm(field=t.field, op=t.op, value=t.value, type=t.type))
        except ValidationError as exc:
            raise HTTPException(400, describe(exc, prefix=f"q.field {t.field!r}: ", first=True)) from None
    try:
        return SampleQuery(terms, meter=meter)
    except SampleQueryError as exc:
        raise HTTPException(400, str(exc)) from None


#: Ceilometer's ``limit``: read as text, so ``²`` or ``-1`` get Ceilometer's message rather than pydantic's.
Limit = Annotated[str | None, Query(description="Most rows returned (a positive integer)")]


def _limit(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:  # "²" is a digit to isdigit, not to int
        raise HTTPException(400, f"limit must be a positive integer, got {raw!r}")
    return int(raw)


def old_sample(s: SeriesRow, r: SampleRow) -> dict[str, Any]:
    return {
        "counter_name": s.meter, "counter_type": s.counter_type, "counter_unit": s.counter_unit,
        "counter_volume": r.volume, "resource_id": s.resource_id, "project_id": s.project_id,
        "user_id": s.user_id, "source": s.source, "timestamp": ceilometer_time(from_ms(r.ts)),
        "recorded_at": ceilometer_time(from_ms(r.recorded)), "resource_metadata": s.metadata,
        "message_id": stored_message_id(r, s),
    }


def new_sample(s: SeriesRow, r: SampleRow) -> dict[str, Any]:
    return {
        "id": stored_message_id(r, s), "meter": s.meter, "type": s.counter_type, "unit": s.counter_unit,
        "volume": r.volume, "user_id": s.user_id, "project_id": s.project_id, "resource_id": s.resource_id,
        "source": s.source, "timestamp": ceilometer_time(from_ms(r.ts)),
        "recorded_at": ceilometer_time(from_ms(r.recorded)), "metadata": s.metadata,
    }


@router.get("/meters", responses=json_body(list[Meter]))
async def list_meters(request: Request, terms: Terms, limit: Limit = None) -> JSONResponse:
    q = parse_query(request, terms)
    series = await _store(request).run(_store(request).select, q)
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in sorted(series, key=lambda s: (s.meter, s.resource_id, -s.last_ts)):
        key = (s.meter, s.counter_type, s.counter_unit, s.resource_id, s.project_id, s.user_id, s.source)
        seen.setdefault(key, {
            "meter_id": base64.b64encode(f"{s.resource_id}+{s.meter}".encode()).decode(),
            "name": s.meter, "type": s.counter_type, "unit": s.counter_unit, "resource_id": s.resource_id,
            "project_id": s.project_id, "user_id": s.user_id, "source": s.source,
        })
    out = list(seen.values())
    most = _limit(limit)
    return JSONResponse(out[:most] if most else out)


@router.get("/meters/{name}", responses=json_body(list[OldSample]))
async def list_meter_samples(name: str, request: Request, terms: Terms, limit: Limit = None) -> JSONResponse:
    store = _store(request)
    q = parse_query(request, terms, meter=name)
    try:
        rows = await store.run(store.samples_sync, q, _limit(limit))
    except SampleQueryError as exc:
        raise HTTPException(400, str(exc)) from None
    return JSONResponse([old_sample(s, r) for s, r in rows])


@router.post("/meters/{name}", status_code=201,
             responses=json_body(list[OldSample], 201))
async def post_samples(name: str, body: list[OldSampleIn], request: Request) -> JSONResponse:
    now = utcnow()
    project, who = project_scope(request), principal(request)  # a scoped caller posts to its own project only
    samples: list[Sample] = []
    for i, s in enumerate(body):
        try:
            check_shape(s.resource_metadata or {})
        except TooComplex as exc:
            raise HTTPException(400, f"sample {i}: resource_metadata {exc}") from None
        if s.counter_name is not None and s.counter_name != name:
            raise HTTPException(400, f"sample {i}: counter_name {s.counter_name!r} does not match the meter "
                                     f"{name!r} in the URL")
        try:
            samples.append(Sample(
                counter_name=name, counter_type=s.counter_type, counter_unit=s.counter_unit,
                counter_volume=s.counter_volume, resource_id=s.resource_id,
                project_id=project or s.project_id or request.headers.get("x-project-id"),
                user_id=(who.user_id if who and project else None) or s.user_id or request.headers.get("x-user-id"),
                source=s.source or "openstack", timestamp=s.timestamp or now,
                resource_metadata=s.resource_metadata or {}, message_id=s.message_id or str(uuid.uuid1()),
            ))
        except ValidationError as exc:
            raise HTTPException(400, describe(exc, prefix=f"sample {i}: ", first=True)) from None
    await publish_records(request.app.state.runtime.bus, samples, durable=True)
    out = []
    for sample in samples:
        d = sample.model_dump(mode="json", exclude={"message_signature"})
        d["timestamp"] = ceilometer_time(sample.timestamp)
        d["recorded_at"] = ceilometer_time(now)
        d["counter_type"] = sample.counter_type.value
        out.append(d)
    return JSONResponse(out, status_code=201)


@router.get("/meters/{name}/statistics", responses=json_body(list[Statistics]))
async def meter_statistics(
    name: str, request: Request, terms: Terms,
    period: Annotated[str | None, Query(description="Seconds per statistics bucket; one bucket when absent")] = None,
    groupby: Annotated[list[str] | None, Query(description="Fields to group by (resource_id, project_id, ...)")] = None,
    aggregate: Annotated[list[str] | None, Query(alias="aggregate.func",
                                                 description=f"Aggregates to compute: {', '.join(AGGREGATES)}")] = None,
) -> JSONResponse:
    store = _store(request)
    q = parse_query(request, terms, meter=name)
    if period is not None and (not (period.isascii() and period.isdigit()) or int(period) <= 0):
        raise HTTPException(400, f"period must be a positive number of seconds, got {period!r}")
    funcs = aggregate or []
    for f in funcs:
        if f not in AGGREGATES:
            raise HTTPException(400, f"aggregate.func {f!r} is not one of {', '.join(AGGREGATES)}")
    try:
        rows = await store.run(store.statistics_sync, q, int(period) if period else None, groupby or [], funcs)
    except (SampleQueryError, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None
    return JSONResponse([r.model_dump(mode="json") for r in rows])


@router.get("/samples", responses=json_body(list[NewSample]))
async def list_samples(request: Request, terms: Terms, limit: Limit = None) -> JSONResponse:
    store = _store(request)
    q = parse_query(request, terms)
    try:
        rows = await store.run(store.samples_sync, q, _limit(limit))
    except SampleQueryError as exc:
        raise HTTPException(400, str(exc)) from None
    return JSONResponse([new_sample(s, r) for s, r in rows])


def _resources(request: Request, series: list[SeriesRow]) -> list[dict[str, Any]]:
    base = str(request.base_url).rstrip("/")
    by_rid: dict[str, list[SeriesRow]] = {}
    for s in series:
        by_rid.setdefault(s.resource_id, []).append(s)
    out = []
    for rid in sorted(by_rid):
        group = sorted(by_rid[rid], key=lambda s: s.last_ts)
        last = group[-1]
        links = [{"href": f"{base}/v2/resources/{rid}", "rel": "self"}]
        links += [{"href": f"{base}/v2/meters/{m}?q.field=resource_id&q.value={rid}", "rel": m}
                  for m in sorted({s.meter for s in group})]
        out.append({
            "resource_id": rid, "project_id": last.project_id, "user_id": last.user_id, "source": last.source,
            "first_sample_timestamp": ceilometer_time(from_ms(min(s.first_ts for s in group))),
            "last_sample_timestamp": ceilometer_time(from_ms(last.last_ts)),
            "metadata": last.metadata, "links": links,
        })
    return out


@router.get("/resources", responses=json_body(list[Resource]))
async def list_resources(request: Request, terms: Terms, limit: Limit = None) -> JSONResponse:
    store = _store(request)
    series = await store.run(store.select, parse_query(request, terms))
    out = _resources(request, series)
    most = _limit(limit)
    return JSONResponse(out[:most] if most else out)


@router.get("/resources/{resource_id}", responses=json_body(Resource))
async def get_resource(resource_id: str, request: Request) -> JSONResponse:
    store = _store(request)
    q = parse_query(request, [SimpleTerm(field="resource_id", op="eq", value=resource_id)])
    out = _resources(request, await store.run(store.select, q))
    if not out:
        raise HTTPException(404, f"resource {resource_id} not found")
    return JSONResponse(out[0])
