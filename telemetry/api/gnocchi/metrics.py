"""Metrics, their measures, the batch endpoints and ``/v1/aggregates``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from telemetry.api.gnocchi.common import (
    body_of, call, creator, flag, measure_params, page, reply, service,
)
from telemetry.gnocchi.models import BASIC_METHODS

router = APIRouter()


@router.get("/v1/metric")
def list_metrics(request: Request) -> Response:
    svc = service(request)
    p = request.query_params
    found = sorted(svc.cat.metrics.values(), key=lambda m: m.id)
    for key in ("name", "unit", "archive_policy_name", "resource_id", "creator"):
        if key in p:
            found = [m for m in found if str(getattr(m, key) or "") == p[key]]
    found, headers = page(request, found, lambda m: m.id)
    return reply([m.render() for m in found], headers=headers)


@router.post("/v1/metric")
async def create_metric(request: Request) -> Response:
    svc = service(request)
    m = await call(svc.create_metric, await body_of(request) or {}, creator(request))
    return reply(m.render(), 201, {"Location": f"{request.url}/{m.id}"})


@router.get("/v1/metric/{mid}")
def get_metric(mid: str, request: Request) -> Response:
    svc = service(request)
    m = svc.metric(mid)
    return reply(m.render(svc.policy(m.archive_policy_name), svc.cat.resources.get(m.resource_id or "")))


@router.delete("/v1/metric/{mid}")
async def delete_metric(mid: str, request: Request) -> Response:
    await call(service(request).delete_metric, mid)
    return Response(status_code=204)


@router.get("/v1/metric/{mid}/measures")
async def get_measures(mid: str, request: Request) -> Response:
    svc = service(request)
    return reply(await call(svc.measures, svc.metric(mid), *measure_params(request)))


@router.post("/v1/metric/{mid}/measures")
async def post_measures(mid: str, request: Request) -> Response:
    svc = service(request)
    await svc.publish(svc.samples_for(svc.metric(mid), await body_of(request)))
    return Response(status_code=202)


@router.post("/v1/batch/metrics/measures")
async def batch_metrics(request: Request) -> Response:
    svc = service(request)
    await svc.publish(await call(svc.batch_metrics, await body_of(request)))
    return Response(status_code=202)


@router.post("/v1/batch/resources/metrics/measures")
async def batch_resources(request: Request) -> Response:
    svc = service(request)
    samples = await call(svc.batch_resources, await body_of(request), flag(request, "create_metrics"),
                         creator(request))
    await svc.publish(samples)
    return Response(status_code=202)


@router.post("/v1/aggregates")
async def aggregates(request: Request) -> Response:
    svc = service(request)
    p = request.query_params
    params: dict[str, Any] = {k: p.get(k) for k in ("start", "stop", "granularity", "needed_overlap", "fill")}
    params["groupby"] = p.getlist("groupby")
    out = await call(svc.aggregates, await body_of(request), params, creator(request))
    if flag(request, "details") and isinstance(out, dict):
        out["references"] = []
    return reply(out)


@router.get("/v1/capabilities")
def capabilities() -> Response:
    return reply({"aggregation_methods": sorted(BASIC_METHODS),
                  "dynamic_aggregation_methods": ["aggregate", "resample", "rolling", "metric", "+", "-", "*", "/",
                                                  "**", "abs", "neg", "clip_min", "clip_max"]})


@router.get("/v1/status")
def status(request: Request) -> Response:
    """Nothing waits for a worker here: measures are readable once the POST returned."""
    service(request)
    return reply({"storage": {"summary": {"metrics": 0, "measures": 0}}, "metricd": {"processors": []}})
