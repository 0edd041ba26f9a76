"""Resource types, resources, their metrics and measures, and resource search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from telemetry.api.gnocchi.common import body_of, call, creator, measure_params, page, reply, service
from telemetry.gnocchi.filters import parse_text
from telemetry.gnocchi.models import GnocchiError, Resource
from telemetry.gnocchi.service import GnocchiService

router = APIRouter()


# -- resource types ------------------------------------------------------------------------------
@router.get("/v1/resource_type")
def list_types(request: Request) -> Response:
    return reply([t.render() for t in sorted(service(request).cat.types.values(), key=lambda t: t.name)])


@router.post("/v1/resource_type")
async def create_type(request: Request) -> Response:
    svc = service(request)
    t = await call(svc.create_type, await body_of(request))
    return reply(t.render(), 201, {"Location": f"{request.url}/{t.name}"})


@router.get("/v1/resource_type/{name}")
def get_type(name: str, request: Request) -> Response:
    return reply(service(request).rtype(name).render())


@router.patch("/v1/resource_type/{name}")
async def patch_type(name: str, request: Request) -> Response:
    svc = service(request)
    return reply((await call(svc.patch_type, name, await body_of(request))).render())


@router.delete("/v1/resource_type/{name}")
async def delete_type(name: str, request: Request) -> Response:
    await call(service(request).delete_type, name)
    return Response(status_code=204)


# -- listing and search ----------------------------------------------------------------------------
def _page(request: Request, found: list[Resource]) -> Response:
    """Gnocchi's ``sort``, ``limit`` and ``marker``, with a ``Link: rel=next`` when a page is full."""
    p = request.query_params
    sorts = p.getlist("sort") or ["revision_start:asc", "started_at:asc"]
    for spec in reversed(sorts):
        key, _, direction = spec.partition(":")
        found.sort(key=lambda r, k=key: (r.field(k) is None, str(r.field(k) or "")),  # type: ignore[misc]
                   reverse=direction.startswith("desc"))
    found, headers = page(request, found, lambda r: r.id)
    return reply([r.render() for r in found], headers=headers)


@router.get("/v1/resource/{rtype}")
def list_resources(rtype: str, request: Request) -> Response:
    svc = service(request)
    text = request.query_params.get("filter")
    return _page(request, svc.search(rtype, parse_text(text) if text else None, creator(request)))


@router.post("/v1/search/resource/{rtype}")
async def search_resources(rtype: str, request: Request) -> Response:
    svc = service(request)
    text = request.query_params.get("filter")
    query = parse_text(text) if text else await body_of(request)
    return _page(request, await call(svc.search, rtype, query, creator(request)))


# -- one resource ----------------------------------------------------------------------------------
@router.post("/v1/resource/{rtype}")
async def create_resource(rtype: str, request: Request) -> Response:
    svc = service(request)
    r = await call(svc.create_resource, rtype, await body_of(request), creator(request))
    return reply(r.render(), 201, {"Location": f"{request.url}/{r.id}"})


@router.get("/v1/resource/{rtype}/{rid}")
def get_resource(rtype: str, rid: str, request: Request) -> Response:
    return reply(service(request).resource(rtype, rid, creator(request)).render())


@router.patch("/v1/resource/{rtype}/{rid}")
async def update_resource(rtype: str, rid: str, request: Request) -> Response:
    svc = service(request)
    r = await call(svc.update_resource, rtype, rid, await body_of(request), creator(request))
    return reply(r.render())


@router.delete("/v1/resource/{rtype}/{rid}")
async def delete_resource(rtype: str, rid: str, request: Request) -> Response:
    await call(service(request).delete_resource, rtype, rid, creator(request))
    return Response(status_code=204)


@router.get("/v1/resource/{rtype}/{rid}/history")
def resource_history(rtype: str, rid: str, request: Request) -> Response:
    """Only the current revision is kept: the history is that one revision."""
    return reply([service(request).resource(rtype, rid, creator(request)).render()])


# -- a resource's metrics --------------------------------------------------------------------------
def _named(svc: GnocchiService, request: Request, rtype: str, rid: str, name: str) -> Any:
    r = svc.resource(rtype, rid, creator(request))
    mid = r.metrics.get(name)
    if mid is None or mid not in svc.cat.metrics:
        raise GnocchiError(404, f"Metric {name} does not exist")
    return svc.cat.metrics[mid]


@router.get("/v1/resource/{rtype}/{rid}/metric")
def list_resource_metrics(rtype: str, rid: str, request: Request) -> Response:
    svc = service(request)
    r = svc.resource(rtype, rid, creator(request))
    ms = [svc.cat.metrics[i] for i in r.metrics.values() if i in svc.cat.metrics]
    return reply([m.render(svc.policy(m.archive_policy_name), None) | {"resource_id": r.id}
                  for m in sorted(ms, key=lambda m: m.name or "")])


@router.post("/v1/resource/{rtype}/{rid}/metric")
async def add_resource_metrics(rtype: str, rid: str, request: Request) -> Response:
    svc = service(request)
    r = svc.resource(rtype, rid, creator(request))
    made = await call(svc.add_resource_metrics, r, await body_of(request), creator(request))
    return reply([m.render() for m in made])


@router.get("/v1/resource/{rtype}/{rid}/metric/{name}")
def get_resource_metric(rtype: str, rid: str, name: str, request: Request) -> Response:
    svc = service(request)
    m = _named(svc, request, rtype, rid, name)
    return reply(m.render(svc.policy(m.archive_policy_name), svc.cat.resources.get(m.resource_id or "")))


@router.delete("/v1/resource/{rtype}/{rid}/metric/{name}")
async def delete_resource_metric(rtype: str, rid: str, name: str, request: Request) -> Response:
    svc = service(request)
    await call(svc.delete_metric, _named(svc, request, rtype, rid, name).id)
    return Response(status_code=204)


@router.get("/v1/resource/{rtype}/{rid}/metric/{name}/measures")
async def get_resource_measures(rtype: str, rid: str, name: str, request: Request) -> Response:
    svc = service(request)
    m = _named(svc, request, rtype, rid, name)
    return reply(await call(svc.measures, m, *measure_params(request)))


@router.post("/v1/resource/{rtype}/{rid}/metric/{name}/measures")
async def post_resource_measures(rtype: str, rid: str, name: str, request: Request) -> Response:
    svc = service(request)
    m = _named(svc, request, rtype, rid, name)
    await svc.publish(svc.samples_for(m, await body_of(request)))
    return Response(status_code=202)


